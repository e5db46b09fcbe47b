//! Text-backed enumerations: stored as text, sent as protobuf enums, parsed from requests.

/// Declares an enum stored as text (both backends keep the same values) with conversions to and
/// from its protobuf enum, and diesel `FromSql`/`ToSql` for `Text` on every backend, so model
/// structs hold the enum itself. An unknown value read from the database is a deserialization
/// error (never a silent default). At the call site `pb` must name the generated module, and
/// `Error` (with `Error::invalid(field, reason)`) and `Result` the service's error types: an
/// unknown value in a request is INVALID_ARGUMENT naming `$field`. The calling crate depends on
/// `diesel` (the derives name it).
///
/// `text_enum!(CourseType, CourseType, "course_type", { Python => "python", Python; })`
#[macro_export]
macro_rules! text_enum {
    ($name:ident, $pb:ident, $field:literal, { $($variant:ident => $text:literal, $pbv:ident;)+ }) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            $crate::__diesel::expression::AsExpression, $crate::__diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = $crate::__diesel::sql_types::Text)]
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

        impl<DB> $crate::__diesel::deserialize::FromSql<$crate::__diesel::sql_types::Text, DB>
            for $name
        where
            DB: $crate::__diesel::backend::Backend,
            String: $crate::__diesel::deserialize::FromSql<$crate::__diesel::sql_types::Text, DB>,
        {
            fn from_sql(
                bytes: <DB as $crate::__diesel::backend::Backend>::RawValue<'_>,
            ) -> $crate::__diesel::deserialize::Result<Self> {
                let text = <String as $crate::__diesel::deserialize::FromSql<
                    $crate::__diesel::sql_types::Text,
                    DB,
                >>::from_sql(bytes)?;
                Self::from_db(&text).ok_or_else(|| {
                    format!("unknown {} {text:?} in the database", stringify!($name)).into()
                })
            }
        }

        impl<DB> $crate::__diesel::serialize::ToSql<$crate::__diesel::sql_types::Text, DB>
            for $name
        where
            DB: $crate::__diesel::backend::Backend,
            str: $crate::__diesel::serialize::ToSql<$crate::__diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut $crate::__diesel::serialize::Output<'b, '_, DB>,
            ) -> $crate::__diesel::serialize::Result {
                <str as $crate::__diesel::serialize::ToSql<
                    $crate::__diesel::sql_types::Text,
                    DB,
                >>::to_sql(self.as_str(), out)
            }
        }
    };
}
