//! A persona file's layout: a TOML header between two lines that are exactly `+++`, then the
//! Markdown body that becomes the prompt.

/// The line that opens and closes the header.
const FENCE: &str = "+++";

/// A persona file cut in two.
#[derive(Debug, PartialEq, Eq)]
pub struct Sections<'a> {
    /// The TOML between the fences; its first line is line 2 of the file.
    pub header: &'a str,
    /// Everything after the closing fence.
    pub body: &'a str,
}

/// Cuts a persona file into header and body. Lines may end in LF or CRLF; a leading UTF-8
/// byte order mark is ignored.
///
/// # Errors
/// What is wrong with the layout, in words: no opening fence, or no closing one.
pub fn split_sections(text: &str) -> Result<Sections<'_>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');

    let opening = lines.next().unwrap_or_default();
    if line_content(opening) != FENCE {
        return Err("the first line must be `+++`, opening the TOML header".to_owned());
    }

    let header_start = opening.len();
    let mut offset = header_start;
    for line in lines {
        if line_content(line) == FENCE {
            return Ok(Sections {
                header: &text[header_start..offset],
                body: &text[offset + line.len()..],
            });
        }
        offset += line.len();
    }
    Err("the header opened by `+++` on line 1 is never closed by a `+++` line".to_owned())
}

/// A line without its LF or CRLF ending.
fn line_content(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// Parses the header as a TOML table.
///
/// # Errors
/// The TOML parser's message, prefixed with the line of the file it points at.
pub fn parse_header(header: &str) -> Result<toml::Table, String> {
    header.parse::<toml::Table>().map_err(|error| {
        let message = error.message().trim().replace('\n', "; ");
        match error.span() {
            Some(span) => format!("line {}: bad TOML: {message}", file_line(header, span.start)),
            None => format!("bad TOML: {message}"),
        }
    })
}

/// The line of the file that byte `position` of the header is on: the header starts on line 2.
fn file_line(header: &str, position: usize) -> usize {
    let before = header.get(..position).unwrap_or(header);
    before.matches('\n').count() + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_body_are_cut_at_the_fences() {
        let sections = split_sections("+++\nid = \"a\"\n+++\n\nHello.\n");
        assert_eq!(sections, Ok(Sections { header: "id = \"a\"\n", body: "\nHello.\n" }));
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let sections = split_sections("+++\r\nid = \"a\"\r\n+++\r\nHello.\r\n");
        assert_eq!(sections, Ok(Sections { header: "id = \"a\"\r\n", body: "Hello.\r\n" }));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let sections = split_sections("\u{feff}+++\n+++\nHi");
        assert_eq!(sections, Ok(Sections { header: "", body: "Hi" }));
    }

    #[test]
    fn a_closing_fence_at_the_end_of_the_file_leaves_an_empty_body() {
        assert_eq!(split_sections("+++\na = 1\n+++"), Ok(Sections { header: "a = 1\n", body: "" }));
    }

    #[test]
    fn a_missing_closing_fence_is_a_fault() {
        let fault = split_sections("+++\nid = \"a\"\n\nHello.\n").err().unwrap_or_default();
        assert!(fault.contains("never closed"), "{fault}");
    }

    #[test]
    fn a_file_without_a_header_is_a_fault() {
        for text in ["", "Hello.\n", "id = \"a\"\n+++\n", " +++\n+++\n", "++++\n+++\n"] {
            let fault = split_sections(text).err().unwrap_or_default();
            assert!(fault.contains("first line"), "{text:?}: {fault}");
        }
    }

    #[test]
    fn bad_toml_names_the_file_line() {
        let fault = parse_header("id = \"a\"\nname = \n").err().unwrap_or_default();
        assert!(fault.starts_with("line 3: bad TOML"), "{fault}");
    }
}
