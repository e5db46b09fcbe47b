//! Text-backed enumerations: stored as text, sent as protobuf enums, parsed from requests.

/// Declares an enum stored as text (both backends keep the same values) with conversions to and
/// from its protobuf enum. At the call site `pb` must name the generated module, and `Error`
/// (with `Error::invalid(field, reason)`) and `Result` the service's error types: an unknown value
/// is INVALID_ARGUMENT naming `$field`.
///
/// `text_enum!(CourseType, CourseType, "course_type", { Python => "python", Python; })`
#[macro_export]
macro_rules! text_enum {
    ($name:ident, $pb:ident, $field:literal, { $($variant:ident => $text:literal, $pbv:ident;)+ }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn from_db(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }

            pub fn to_pb(self) -> pb::$pb {
                match self { $(Self::$variant => pb::$pb::$pbv),+ }
            }

            /// `Ok(None)` for UNSPECIFIED; an unknown number is INVALID_ARGUMENT naming the field.
            pub fn from_pb(value: i32) -> Result<Option<Self>> {
                match pb::$pb::try_from(value) {
                    Ok(pb::$pb::Unspecified) => Ok(None),
                    $(Ok(pb::$pb::$pbv) => Ok(Some(Self::$variant)),)+
                    Err(_) => Err(Error::invalid($field, format!("unknown value {value}"))),
                }
            }

            /// For text inputs (REST, CLI).
            pub fn parse(text: &str) -> Result<Self> {
                Self::from_db(text).ok_or_else(|| Error::invalid(
                    $field,
                    format!("unknown value {text:?}; expected one of {}", [$($text),+].join(", ")),
                ))
            }
        }
    };
}
