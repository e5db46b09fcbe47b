//! What a normalised statement is called outside the profiler: a span name (`SELECT courses`),
//! its operation, its main table and a fingerprint for metric labels — all bounded, none
//! carrying a bind value (the text they come from has none).
use std::sync::Arc;

/// Longest table name kept in a span name; anything longer (or odd) is left out.
const MAX_TABLE_CHARS: usize = 63;

/// Operations named as such; any other first word is `OTHER`, so the set of names is bounded.
const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "SHOW",
    "PRAGMA",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "VACUUM",
    "ANALYZE",
    "EXPLAIN",
    "COPY",
    "LOCK",
    "VALUES",
    "CALL",
    "REINDEX",
];

/// A statement's bounded names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatementSummary {
    /// `SELECT courses`, or the operation alone when no table is named.
    pub name: Arc<str>,
    /// `SELECT`, `INSERT`, … or `OTHER`.
    pub operation: &'static str,
    /// The main table: the first one after `FROM` (outside parentheses), `INTO` or `UPDATE`.
    pub table: Option<Arc<str>>,
    /// `name` and a hash of the text with placeholder lists collapsed, so `IN (?, ?)` and
    /// `IN (?, ?, ?)` are one fingerprint: `SELECT courses 5f0e3a91`.
    pub fingerprint: Arc<str>,
}

impl StatementSummary {
    pub fn of(sql: &str) -> Self {
        let tokens = tokens(sql);
        let first = tokens.first().map(|t| t.upper()).unwrap_or_default();
        let mut operation = OPERATIONS
            .iter()
            .find(|op| **op == first)
            .copied()
            .unwrap_or("OTHER");
        let mut from = 0;
        if operation == "WITH" {
            // The statement after the common table expressions says what this one does.
            if let Some((at, op)) = tokens.iter().enumerate().skip(1).find_map(|(at, t)| {
                let word = t.upper();
                (t.depth == 0)
                    .then(|| {
                        ["SELECT", "INSERT", "UPDATE", "DELETE"]
                            .into_iter()
                            .find(|op| *op == word)
                    })
                    .flatten()
                    .map(|op| (at, op))
            }) {
                operation = op;
                from = at;
            }
        }
        let after = |keyword: &str| {
            tokens
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, t)| t.depth == 0 && t.upper() == keyword)
                .and_then(|(at, _)| tokens.get(at + 1))
                .and_then(|t| table_name(t.text))
        };
        let table = match operation {
            "SELECT" | "DELETE" => after("FROM"),
            "INSERT" => after("INTO"),
            "UPDATE" => tokens.get(from + 1).and_then(|t| table_name(t.text)),
            _ => None,
        };
        let name: Arc<str> = match &table {
            Some(table) => format!("{operation} {table}").into(),
            None => operation.into(),
        };
        let fingerprint = format!("{name} {:08x}", fnv1a(&collapse_placeholders(sql)) >> 32);
        Self {
            name,
            operation,
            table: table.map(Arc::from),
            fingerprint: fingerprint.into(),
        }
    }
}

/// A word or a quoted identifier, and how deep in parentheses it is.
struct Token<'a> {
    text: &'a str,
    depth: u32,
}

impl Token<'_> {
    fn upper(&self) -> String {
        self.text.to_ascii_uppercase()
    }
}

/// Words (`[A-Za-z0-9_$.]` runs and quoted identifiers, dotted ones kept whole) outside string
/// literals, with their parenthesis depth. Punctuation and literals are skipped.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let (mut at, mut depth) = (0, 0u32);
    while at < bytes.len() {
        match bytes[at] {
            b'(' => {
                depth += 1;
                at += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b'\'' => at = skip_quoted(bytes, at, b'\''),
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                at = bytes[at..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |n| at + n);
            }
            b'"' | b'`' | b'[' | b'_' | b'$' => {
                let start = at;
                at = identifier_end(bytes, at);
                tokens.push(Token {
                    text: &sql[start..at],
                    depth,
                });
            }
            b if b.is_ascii_alphanumeric() => {
                let start = at;
                at = identifier_end(bytes, at);
                tokens.push(Token {
                    text: &sql[start..at],
                    depth,
                });
            }
            _ => at += 1,
        }
    }
    tokens
}

/// The end of an identifier starting at `at`: plain or quoted parts joined by dots.
fn identifier_end(bytes: &[u8], mut at: usize) -> usize {
    loop {
        match bytes.get(at) {
            Some(b'"') => at = skip_quoted(bytes, at, b'"'),
            Some(b'`') => at = skip_quoted(bytes, at, b'`'),
            Some(b'[') => at = skip_quoted(bytes, at, b']'),
            Some(b) if b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$' => {
                while bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$')
                {
                    at += 1;
                }
            }
            _ => return at,
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
        } else {
            return at;
        }
    }
}

/// Past the quoted text opening at `at` (a doubled closing quote is part of the text).
fn skip_quoted(bytes: &[u8], at: usize, close: u8) -> usize {
    let mut at = at + 1;
    while at < bytes.len() {
        if bytes[at] == close {
            if bytes.get(at + 1) == Some(&close) && close != b']' {
                at += 2;
                continue;
            }
            return at + 1;
        }
        at += 1;
    }
    bytes.len()
}

/// `"public"."courses"` → `courses`: the last part, unquoted, if it is a plain bounded name.
fn table_name(token: &str) -> Option<String> {
    let last = token.rsplit('.').next()?;
    let name = last.trim_matches(|c| matches!(c, '"' | '`' | '[' | ']'));
    let plain = !name.is_empty()
        && name.len() <= MAX_TABLE_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !matches!(
            name.to_ascii_uppercase().as_str(),
            "SELECT" | "LATERAL" | "ONLY" | "VALUES"
        );
    plain.then(|| name.to_owned())
}

/// The text with `$1`-style placeholders written `?`, whitespace runs as one space, and lists
/// of placeholders (`?, ?, ?`) and of rows (`(?), (?)`) collapsed to one.
fn collapse_placeholders(sql: &str) -> String {
    let mut text = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            text.push('?');
        } else if c.is_whitespace() {
            if !text.ends_with(' ') {
                text.push(' ');
            }
        } else {
            text.push(c);
        }
    }
    for (repeated, once) in [("?, ?", "?"), ("?,?", "?"), ("(?), (?)", "(?)")] {
        while text.contains(repeated) {
            text = text.replace(repeated, once);
        }
    }
    text
}

/// FNV-1a: stable across processes and releases, so a fingerprint means the same everywhere.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(sql: &str) -> String {
        StatementSummary::of(sql).name.to_string()
    }

    #[test]
    fn names_the_operation_and_the_main_table() {
        assert_eq!(
            name(
                r#"SELECT "courses"."id", (SELECT COUNT(*) FROM "lessons") FROM "courses" INNER JOIN "categories" ON 1 WHERE "courses"."id" = $1"#
            ),
            "SELECT courses"
        );
        assert_eq!(
            name(r#"INSERT INTO "enrollments" ("user_id") VALUES (?)"#),
            "INSERT enrollments"
        );
        assert_eq!(
            name(r#"UPDATE "courses" SET "title" = $1"#),
            "UPDATE courses"
        );
        assert_eq!(
            name(r#"DELETE FROM "public"."progress""#),
            "DELETE progress"
        );
        assert_eq!(
            name("WITH recent AS (SELECT id FROM a) SELECT * FROM recent_view"),
            "SELECT recent_view"
        );
        assert_eq!(name("SELECT 1"), "SELECT");
        assert_eq!(name("BEGIN"), "BEGIN");
        assert_eq!(name("select count(*) from users"), "SELECT users");
        assert_eq!(name("SELECT * FROM (SELECT 1) AS t"), "SELECT");
        assert_eq!(name("FROBNICATE everything"), "OTHER");
        assert_eq!(name(""), "OTHER");
    }

    #[test]
    fn string_literals_and_odd_names_never_reach_the_name() {
        assert_eq!(name("SELECT 'x FROM secret' FROM t"), "SELECT t");
        let long = format!("SELECT * FROM {}", "t".repeat(200));
        assert_eq!(name(&long), "SELECT");
        assert_eq!(name(r#"SELECT * FROM "we ird""#), "SELECT");
    }

    #[test]
    fn placeholder_lists_share_a_fingerprint() {
        let fingerprint = |sql: &str| StatementSummary::of(sql).fingerprint.to_string();
        let two = fingerprint(r#"SELECT "id" FROM "courses" WHERE "id" IN (?, ?)"#);
        let five = fingerprint(r#"SELECT "id" FROM "courses" WHERE "id" IN (?, ?, ?, ?, ?)"#);
        assert_eq!(two, five);
        assert!(two.starts_with("SELECT courses "), "{two}");
        assert_eq!(two.len(), "SELECT courses ".len() + 8);
        let rows = |n: usize| {
            let rows = vec!["($1, $2)"; n].join(", ");
            fingerprint(&format!(r#"INSERT INTO "t" ("a", "b") VALUES {rows}"#))
        };
        assert_eq!(rows(1), rows(300));
        assert_ne!(
            two,
            fingerprint(r#"SELECT "id" FROM "courses" WHERE "slug" IN (?, ?)"#)
        );
    }
}
