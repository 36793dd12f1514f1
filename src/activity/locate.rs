//! Where a key is in a TOML text, and which key is at a place: so that every error in a file
//! an operator edits names the file, the line and the key.
//!
//! serde's TOML errors carry a byte span but no key, and checks made after deserializing
//! know the key but not the place. Both are answered from the document as `toml_edit` parses
//! it with its spans (the parser `toml` itself uses, so the two agree on every input). Keys
//! are written as dotted paths with 0-based indices for arrays of tables and arrays:
//! `sponsor[1].packets`, `port[0].mtu`.

use toml_edit::{ImDocument, Item, Key, Table, Value};

/// A parsed TOML text for looking places up. A text that does not parse (a syntax error)
/// still names lines, and keys by the table header and `key =` of the line.
pub(crate) struct Places<'a> {
    text: &'a str,
    doc: Option<ImDocument<&'a str>>,
}

impl<'a> Places<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Places {
            text,
            doc: ImDocument::parse(text).ok(),
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The key at a byte offset: the innermost key or value whose span holds it, or the table
    /// whose header holds it; the empty string at the top level outside any table.
    pub(crate) fn key_at(&self, offset: usize) -> String {
        match &self.doc {
            Some(doc) => {
                let mut path = String::new();
                walk_table(doc.as_table(), offset, &mut path);
                path
            }
            None => self.key_at_by_lines(offset),
        }
    }

    /// For text that does not parse: the last table header above the offset, and the bare key
    /// before `=` on the offset's line.
    fn key_at_by_lines(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        // Only what reads as a dotted bare key names one: in a text that does not parse,
        // anything else may be part of a broken string.
        let dotted = |k: &str| {
            let k = k.trim();
            (!k.is_empty()
                && k.split('.').all(|part| {
                    let part = part.trim();
                    !part.is_empty() && part.chars().all(is_bare)
                }))
            .then(|| k.to_string())
        };
        let table = self.text[..start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .and_then(|l| dotted(l.trim_matches(|c| c == '[' || c == ']')));
        let key = self.text[start..end]
            .split_once('=')
            .and_then(|(k, _)| dotted(k));
        match (table, key) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (Some(t), None) => t,
            (None, Some(k)) => k,
            (None, None) => String::new(),
        }
    }

    /// The byte offset of a key by its path: where the key is written, or if it is absent,
    /// the header of the nearest table on its path that is written (where the key belongs),
    /// or the start of the text.
    pub(crate) fn offset_of(&self, path: &str) -> usize {
        let Some(doc) = &self.doc else {
            return 0;
        };
        let mut table = doc.as_table();
        let mut found = table.span().map_or(0, |s| s.start);
        let mut parts = segments(path).peekable();
        while let Some((name, index)) = parts.next() {
            let Some((key, item)) = table.get_key_value(name) else {
                return found;
            };
            found = start_of(key)
                .or(item.span().map(|s| s.start))
                .unwrap_or(found);
            let last = parts.peek().is_none();
            match (item, index) {
                (Item::Table(t), None) => {
                    found = t.span().map_or(found, |s| s.start);
                    table = t;
                }
                (Item::ArrayOfTables(a), Some(i)) => match a.get(i) {
                    Some(t) => {
                        found = t.span().map_or(found, |s| s.start);
                        table = t;
                    }
                    None => return found,
                },
                (Item::Value(Value::Array(a)), Some(i)) if last => {
                    return a.get(i).and_then(Value::span).map_or(found, |s| s.start);
                }
                _ => return found,
            }
        }
        found
    }

    /// A `toml` deserialization error as its line, its key and its message. serde names a
    /// missing key in the message and places it at its table; the key is then the table's
    /// path and the field.
    pub(crate) fn toml_error(&self, e: &toml::de::Error) -> (usize, String, String) {
        let mut offset = e.span().map_or(0, |s| s.start).min(self.text.len());
        if offset == self.text.len() && self.text.ends_with('\n') {
            // At the end of the input: the last line, not the empty one after it.
            offset -= 1;
        }
        // Syntax errors come in lines ("invalid array", "expected `]`"), or none at all
        // where a value is missing; the column says where on the line.
        let mut message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        if self.doc.is_none() {
            let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
            let column = self.text[line_start..offset].chars().count() + 1;
            message = match message.is_empty() {
                true => format!("not valid TOML at column {column}"),
                false => format!("{message} at column {column}"),
            };
        } else if message.is_empty() {
            message = "not valid here".into();
        }
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
            .map(str::to_string);
        let mut key = match (&missing, &self.doc, e.span()) {
            // The span is the table's own: its path, not the key at its first byte (the root's
            // span is 0..0, where the first table may start).
            (Some(_), Some(doc), Some(span)) => {
                let mut path = String::new();
                table_with_span(doc.as_table(), &span, &mut path);
                path
            }
            _ => self.key_at(offset),
        };
        if let Some(field) = missing {
            push(&mut key, &field);
            message = "missing: the key is required".into();
        }
        if key.is_empty() {
            key = TOP_LEVEL.into();
        }
        (self.line(offset), key, message)
    }

    /// [`Places::offset_of`] as a line.
    pub(crate) fn line_of_key(&self, path: &str) -> usize {
        self.line(self.offset_of(path))
    }
}

/// How errors name the top level of a file, outside any key.
pub(crate) const TOP_LEVEL: &str = "(top level)";

/// `sponsor[1].packets` as ("sponsor", Some(1)), ("packets", None).
fn segments(path: &str) -> impl Iterator<Item = (&str, Option<usize>)> {
    path.split('.').filter(|s| !s.is_empty()).map(|s| {
        match s.strip_suffix(']').and_then(|s| s.split_once('[')) {
            Some((name, i)) => (name, i.parse().ok()),
            None => (s, None),
        }
    })
}

fn start_of(key: &Key) -> Option<usize> {
    key.span().map(|s| s.start)
}

fn holds(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// A character of a TOML bare key.
fn is_bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Appends a key to a dotted path, quoted as TOML quotes it unless it is a bare key.
fn push(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    if !key.is_empty() && key.chars().all(is_bare) {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

/// Appends to `path` the key at `offset` within `table`; true if one was found.
fn walk_table(table: &Table, offset: usize, path: &mut String) -> bool {
    for (name, item) in table.iter() {
        let key = table.key(name);
        let len = path.len();
        push(path, name);
        if key.is_some_and(|k| holds(k.span(), offset)) {
            return true;
        }
        let found = match item {
            Item::Value(v) => walk_value(v, offset, path),
            Item::Table(t) => walk_table(t, offset, path) || holds(t.span(), offset),
            Item::ArrayOfTables(a) => {
                let mut found = false;
                for (i, t) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    if walk_table(t, offset, path) || holds(t.span(), offset) {
                        found = true;
                        break;
                    }
                    path.truncate(len);
                }
                found
            }
            Item::None => false,
        };
        if found {
            return true;
        }
        path.truncate(len);
    }
    false
}

/// Appends to `path` the path of the innermost table (or inline table) under `table` whose
/// span is `span`; leaves it as it is (`table` itself) if none is.
fn table_with_span(table: &Table, span: &std::ops::Range<usize>, path: &mut String) -> bool {
    fn inline(
        t: &toml_edit::InlineTable,
        span: &std::ops::Range<usize>,
        path: &mut String,
    ) -> bool {
        for (name, v) in t.iter() {
            if let Value::InlineTable(t) = v {
                let len = path.len();
                push(path, name);
                if inline(t, span, path) || t.span().as_ref() == Some(span) {
                    return true;
                }
                path.truncate(len);
            }
        }
        false
    }
    for (name, item) in table.iter() {
        let len = path.len();
        push(path, name);
        let found = match item {
            Item::Table(t) => table_with_span(t, span, path) || t.span().as_ref() == Some(span),
            Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = table_with_span(t, span, path) || t.span().as_ref() == Some(span);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Item::Value(Value::InlineTable(t)) => {
                inline(t, span, path) || t.span().as_ref() == Some(span)
            }
            Item::Value(Value::Array(a)) => a.iter().enumerate().any(|(i, v)| match v {
                Value::InlineTable(t) => {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let found = inline(t, span, path) || t.span().as_ref() == Some(span);
                    if !found {
                        path.truncate(len);
                    }
                    found
                }
                _ => false,
            }),
            _ => false,
        };
        if found {
            return true;
        }
        path.truncate(len);
    }
    false
}

/// Within a value whose key is already on `path`: inline tables are walked like tables; an
/// array names the key itself (an element's index adds nothing an operator needs).
fn walk_value(value: &Value, offset: usize, path: &mut String) -> bool {
    match value {
        Value::InlineTable(t) => {
            for (name, v) in t.iter() {
                let len = path.len();
                push(path, name);
                if t.key(name).is_some_and(|k| holds(k.span(), offset))
                    || walk_value(v, offset, path)
                {
                    return true;
                }
                path.truncate(len);
            }
            holds(value.span(), offset)
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if let Value::InlineTable(_) = v {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    if walk_value(v, offset, path) {
                        return true;
                    }
                    path.truncate(len);
                }
            }
            holds(value.span(), offset)
        }
        _ => holds(value.span(), offset),
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod test {
    use super::*;

    const TEXT: &str = "top = 1\n[node]\nindex = 0\nipv4 = \"x\"\n\n[[sponsor]]\nid = 1\n\n[[sponsor]]\nid = 2\nrounds = [\n  1,\n  2,\n]\nx = { a = 1, b = [3] }\n";

    #[test]
    fn key_at_offsets() {
        let p = Places::new(TEXT);
        let at = |needle: &str| p.key_at(TEXT.find(needle).unwrap());
        assert_eq!(at("top"), "top");
        assert_eq!(at("[node]"), "node");
        assert_eq!(at("0\n"), "node.index");
        assert_eq!(at("\"x\""), "node.ipv4");
        assert_eq!(at("id = 2"), "sponsor[1].id");
        assert_eq!(at("2,"), "sponsor[1].rounds");
        assert_eq!(at("b = "), "sponsor[1].x.b");
        assert_eq!(at("[3]"), "sponsor[1].x.b");
    }

    #[test]
    fn offsets_of_keys() {
        let p = Places::new(TEXT);
        assert_eq!(p.line_of_key("node.ipv4"), 4);
        assert_eq!(p.line_of_key("node.mac"), 2);
        assert_eq!(p.line_of_key("sponsor[1].id"), 10);
        assert_eq!(p.line_of_key("sponsor[1].rounds"), 11);
        assert_eq!(p.line_of_key("sponsor[1].rounds[1]"), 13);
        assert_eq!(p.line_of_key("sponsor[1].packets"), 9);
        assert_eq!(p.line_of_key("sponsor[5].id"), 6);
        assert_eq!(p.line_of_key("throttle.floor_ms"), 1);
    }

    fn toml_error(text: &str) -> (usize, String, String) {
        let e = toml::from_str::<toml::Value>(text).unwrap_err();
        Places::new(text).toml_error(&e)
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        assert_eq!(
            toml_error("A="),
            (1, "A".into(), "not valid TOML at column 3".into())
        );
        assert_eq!(
            toml_error("[node]\nx = [1,\n2,\n"),
            (
                3,
                "node".into(),
                "invalid array: expected `]` at column 3".into()
            )
        );
    }

    #[test]
    fn unparsable_text_names_keys_by_lines() {
        let text = "[node]\nindex = 0\ncount = \"unterminated\n";
        let p = Places::new(text);
        assert_eq!(p.key_at(text.find("\"unt").unwrap()), "node.count");
        assert_eq!(p.key_at(2), "");
        // A broken line that is no key names none.
        let text = ": _=\0";
        assert_eq!(Places::new(text).key_at(3), "");
        let text = "\"a: b\" = 1\nc = ";
        assert_eq!(Places::new(text).key_at(3), "");
        let text = "[U=\"\"\"\n[\0\nU=0\n";
        assert_eq!(Places::new(text).key_at(text.len() - 1), "U");
    }

    #[test]
    fn quoted_keys_are_quoted() {
        let text = "[t]\n\"a: b\" = 1\n";
        assert_eq!(Places::new(text).key_at(8), "t.\"a: b\"");
    }
}
