//! Just enough HTTP/1.1 for the benchmark: one request at a time on a kept-alive connection,
//! bodies by `Content-Length` or chunked, replies whole or as a chunked stream.

use std::io::{self, BufRead, Write};

/// Bounds on what one request may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A request as the stub needs it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// Whether the client lets the connection carry another request after this one.
    pub keep_alive: bool,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The next request on the connection, or `None` when the client closed it between requests.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = Vec::new();
    if read_line(reader, &mut line, MAX_HEAD_BYTES)? == 0 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split_ascii_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        body: Vec::new(),
        keep_alive: version == "HTTP/1.1",
    };

    let mut length = 0usize;
    let mut chunked = false;
    let mut head_bytes = line.len();
    loop {
        line.clear();
        head_bytes +=
            read_line(reader, &mut line, MAX_HEAD_BYTES - head_bytes.min(MAX_HEAD_BYTES))?;
        let header = String::from_utf8_lossy(&line);
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid("malformed header"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value.parse().map_err(|_| invalid("bad content-length"))?;
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" if value.eq_ignore_ascii_case("close") => request.keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => request.keep_alive = true,
            _ => {}
        }
    }

    if chunked {
        request.body = read_chunked(reader)?;
    } else if length > MAX_BODY_BYTES {
        return Err(invalid("body too large"));
    } else {
        request.body.resize(length, 0);
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

/// One line, LF included, of at most `limit` bytes; 0 at the end of the connection.
fn read_line<R: BufRead>(reader: &mut R, line: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let mut limited = io::Read::take(reader, limit as u64 + 1);
    let read = limited.read_until(b'\n', line)?;
    if read > limit {
        return Err(invalid("line too long"));
    }
    Ok(read)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        read_line(reader, &mut line, 1024)?;
        let size_text = String::from_utf8_lossy(&line);
        let size_text = size_text.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(invalid("body too large"));
        }
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                line.clear();
                if read_line(reader, &mut line, 8 * 1024)? == 0 || line.trim_ascii().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        read_line(reader, &mut line, 2)?;
    }
}

/// A whole reply with a `Content-Length`, in one write.
pub fn write_whole(
    out: &mut impl Write,
    status: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: {connection}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(body);
    out.write_all(&reply)?;
    out.flush()
}

/// The head of a chunked event stream.
pub fn write_stream_head(out: &mut impl Write, keep_alive: bool) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
         cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {connection}\r\n\r\n"
    );
    out.write_all(head.as_bytes())?;
    out.flush()
}

/// One HTTP chunk, sent at once in one write; an empty `data` ends the stream.
pub fn write_chunk(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        out.write_all(b"0\r\n\r\n")?;
        return out.flush();
    }
    let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\r\n");
    out.write_all(&frame)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_request_with_a_length_then_the_next() {
        let wire = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}\
                     GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
        let mut reader = &wire[..];
        let first = read_request(&mut reader).ok().flatten();
        let first = first.map(|r| (r.method, r.path, r.body, r.keep_alive));
        assert_eq!(
            first,
            Some(("POST".into(), "/v1/chat/completions".into(), b"{}".to_vec(), true))
        );
        let second = read_request(&mut reader).ok().flatten();
        assert_eq!(second.map(|r| (r.path, r.keep_alive)), Some(("/health".into(), false)));
        assert!(matches!(read_request(&mut reader), Ok(None)));
    }

    #[test]
    fn reads_a_chunked_body() {
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let request = read_request(&mut &wire[..]).ok().flatten();
        assert_eq!(request.map(|r| r.body), Some(b"abcde".to_vec()));
    }

    #[test]
    fn refuses_an_oversized_body() {
        let wire = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY_BYTES + 1);
        assert!(read_request(&mut wire.as_bytes()).is_err());
    }

    #[test]
    fn frames_chunks() {
        let mut out = Vec::new();
        let _ = write_chunk(&mut out, b"hello");
        let _ = write_chunk(&mut out, b"");
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }
}
