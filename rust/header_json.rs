//! The JSON of a safetensors header, read by a parser written for this one schema rather than
//! by serde. serde's data model is more lenient than the format: a derived enum also accepts a
//! one-key object (`"dtype": {"F32": null}` passed as F32), a derived struct also accepts an
//! array, and a tree of raw values costs several times the header's size in memory. This reader
//! takes exactly the JSON that the safetensors format describes, and nothing else:
//!
//! - values are read by what the schema expects at that place: strings, objects, arrays of
//!   integers; any other JSON value (null, a boolean, a float, a nested object) is refused where
//!   it stands, so no generic value is ever built and nothing recurses;
//! - strings as JSON writes them (escapes included; a raw control character, an unknown escape
//!   or a lone surrogate, which cannot be UTF-8, is refused);
//! - integers as plain digits: no sign (so no `-0`), fraction, exponent or leading zero, at most
//!   `u64::MAX`;
//! - whitespace between tokens as JSON has it (space, tab, LF, CR); no trailing comma.
//!
//! Keys are compared after unescaping, so `"a"` and `"\u0061"` are the same key.

use std::borrow::Cow;

/// A cursor over the header text.
pub(crate) struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    /// The byte offset the parser has reached.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.text.len()
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub(crate) fn error(&self, what: impl std::fmt::Display) -> String {
        format!("header JSON at byte {}: {what}", self.pos)
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    /// An object: `member` reads each value (whitespace skipped) after its key.
    pub(crate) fn object(
        &mut self,
        what: &str,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.skip_ws();
        if self.peek() != Some(b'{') {
            return Err(self.error(format!("{what} is not a JSON object")));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let key = self.string("a key")?;
            self.expect(b':', "':' after a key")?;
            self.skip_ws();
            member(self, key)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error(format!("expected ',' or '}}' in {what}"))),
            }
        }
    }

    /// An array of integers, at most `max_len` of them.
    pub(crate) fn integers(&mut self, what: &str, max_len: usize) -> Result<Vec<u64>, String> {
        if self.peek() != Some(b'[') {
            return Err(self.error(format!("{what} is not an array of integers")));
        }
        self.pos += 1;
        let mut out = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            if out.len() == max_len {
                return Err(self.error(format!("{what} has more than {max_len} elements")));
            }
            self.skip_ws();
            out.push(self.integer(what)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(self.error(format!("expected ',' or ']' in {what}"))),
            }
        }
    }

    /// A non-negative integer written as plain digits, within u64.
    fn integer(&mut self, what: &str) -> Result<u64, String> {
        let start = self.pos;
        let digits = self.bytes()[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            let found = match self.peek() {
                Some(b'-') => "a negative number",
                Some(b'"') => "a string",
                _ => "something else",
            };
            return Err(self.error(format!("{what} holds {found}, not an integer")));
        }
        if digits > 1 && self.bytes()[start] == b'0' {
            return Err(self.error(format!("{what} holds a number with a leading zero")));
        }
        self.pos += digits;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error(format!("{what} holds a number that is not an integer")));
        }
        self.text[start..self.pos]
            .parse::<u64>()
            .map_err(|_| self.error(format!("{what} holds an integer beyond {}", u64::MAX)))
    }

    /// A JSON string, borrowed from the text when it holds no escape.
    pub(crate) fn string(&mut self, what: &str) -> Result<Cow<'a, str>, String> {
        if self.peek() != Some(b'"') {
            return Err(self.error(format!("{what} is not a string")));
        }
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start; // start of the unescaped run not yet copied into `owned`
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            match b {
                b'"' => {
                    let tail = &self.text[run..self.pos];
                    self.pos += 1;
                    return Ok(match owned {
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                        None => Cow::Borrowed(tail),
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    let c = self.escape()?;
                    owned.as_mut().expect("just set").push(c);
                    run = self.pos;
                }
                0x00..=0x1f => return Err(self.error("a raw control character in a string")),
                _ => self.pos += 1,
            }
        }
    }

    /// The character of an escape, the backslash already read.
    fn escape(&mut self) -> Result<char, String> {
        let Some(b) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        if self.bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("a lone surrogate escape (not UTF-8)"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error("a lone surrogate escape (not UTF-8)"));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error("a lone surrogate escape (not UTF-8)"))
                    }
                    other => other,
                };
                char::from_u32(code).ok_or_else(|| self.error("an invalid \\u escape"))?
            }
            _ => return Err(self.error("an unknown escape in a string")),
        })
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes()
            .get(self.pos..self.pos + 4)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.error("a \\u escape without four hex digits"))?;
        let code = u32::from_str_radix(std::str::from_utf8(digits).expect("ASCII"), 16)
            .expect("four hex digits");
        self.pos += 4;
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Result<String, String> {
        let mut p = Parser::new(text);
        let s = p.string("s")?.into_owned();
        assert!(p.at_end(), "{text}");
        Ok(s)
    }

    fn integers(text: &str) -> Result<Vec<u64>, String> {
        Parser::new(text).integers("shape", 4)
    }

    #[test]
    fn reads_strings_with_every_escape() {
        assert_eq!(string(r#""plain""#).unwrap(), "plain");
        assert_eq!(
            string(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#).unwrap(),
            "a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1f600}z"
        );
        assert_eq!(string(r#""\u0000""#).unwrap(), "\0");
        for bad in [
            r#""\ud800""#,
            r#""\ud800x""#,
            r#""\ude00""#,
            r#""\ud800\u0041""#,
            r#""\x41""#,
            r#""\u12""#,
            "\"a\tb\"",
            r#""open"#,
        ] {
            assert!(string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_plain_integers_only() {
        assert_eq!(integers("[]").unwrap(), Vec::<u64>::new());
        assert_eq!(
            integers("[ 0 , 7,\n18446744073709551615 ]").unwrap(),
            [0, 7, u64::MAX]
        );
        for bad in [
            "[-0]",
            "[-1]",
            "[01]",
            "[1.0]",
            "[1e3]",
            "[1E3]",
            "[18446744073709551616]",
            "[null]",
            "[true]",
            "[\"1\"]",
            "[1,]",
            "[1 2]",
            "[1,2,3,4,5]",
            "{}",
            "null",
        ] {
            assert!(integers(bad).is_err(), "{bad}");
        }
    }
}
