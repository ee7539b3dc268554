//! The one percent-encoding set of skyhost: the bytes a URL path cannot carry as they are.
//! Every other set is this one with a stated difference: a raw path keeps its `%` escapes
//! ([`RAW_PATH`]), a placeholder value also escapes what would split a query
//! ([`VALUE`]). Pure.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Bytes escaped when a decoded path is written into a URL (a `Location`, a redirect
/// target): controls, space, `"`, `#`, `%`, `<`, `>`, `?`, `\`, `^`, `` ` ``, `{`, `|`,
/// `}`, and every non-ASCII byte.
pub const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// [`PATH`] for a path that is still raw: its `%` escapes stay as they are, for the
/// origin to judge.
pub const RAW_PATH: &AsciiSet = &PATH.remove(b'%');

/// [`PATH`] for a value substituted into a URL that may hold a query: `&`, `=` and `+`
/// too, so a value cannot add parameters. A splat keeps its slashes (it stands for several
/// segments); any other value escapes them ([`VALUE_SEGMENT`]).
pub const VALUE: &AsciiSet = &PATH.add(b'&').add(b'=').add(b'+');

/// [`VALUE`] with `/` escaped: a value that stands for one segment.
pub const VALUE_SEGMENT: &AsciiSet = &VALUE.add(b'/');

/// A decoded path encoded for a URL.
pub fn path(p: &str) -> String {
    utf8_percent_encode(p, PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let cases: [(&str, &AsciiSet, &str); 10] = [
            ("/a b/é?#", PATH, "/a%20b/%C3%A9%3F%23"),
            ("/100%", PATH, "/100%25"),
            ("/a&b=c+d/e", PATH, "/a&b=c+d/e"),
            ("/{x}|`^\\\"<>", PATH, "/%7Bx%7D%7C%60%5E%5C%22%3C%3E"),
            ("/already%20escaped", RAW_PATH, "/already%20escaped"),
            ("/a b?", RAW_PATH, "/a%20b%3F"),
            ("a&b=c+d/e", VALUE, "a%26b%3Dc%2Bd/e"),
            ("a/b", VALUE_SEGMENT, "a%2Fb"),
            ("100%", VALUE_SEGMENT, "100%25"),
            ("\u{7f}\t", PATH, "%7F%09"),
        ];
        for (input, set, want) in cases {
            assert_eq!(utf8_percent_encode(input, set).to_string(), want, "{input}");
        }
        assert_eq!(path("/ü"), "/%C3%BC");
    }
}
