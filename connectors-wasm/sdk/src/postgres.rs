//! A small PostgreSQL client over a stream the host opened and authenticated
//! ([`crate::database::connect`]): the simple query protocol (catalog queries, transaction
//! control), the extended protocol with bind parameters and binary results, and
//! `COPY ... TO STDOUT (FORMAT binary)`. Messages are encoded by `postgres-protocol`;
//! values are decoded straight into Arrow builders ([`arrow`]).
//!
//! ```ignore
//! use agnes_connector_sdk::postgres::Client;
//! let mut pg = Client::connect("main")?;
//! let rows = pg.simple_query("SELECT current_database()")?;
//! ```

pub mod arrow;

use std::io::{Read, Write};
use std::ops::Range;

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use crate::Error;

/// How much the client asks the host for at once.
const READ_CHUNK: usize = 1 << 20;
/// The largest message accepted from the server.
const MAX_MESSAGE: usize = 1 << 30;

/// One column of a result, as RowDescription describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// One row: its fields as byte slices (`None` is NULL), binary or text as requested.
pub struct Row<'a> {
    data: &'a [u8],
    fields: &'a [Option<(u32, u32)>],
}

impl<'a> Row<'a> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
    /// Field `i`: `None` for NULL.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.fields[i].map(|(s, e)| &self.data[s as usize..e as usize])
    }
}

/// A PostgreSQL session over a byte stream.
pub struct Client<S: Read + Write> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: BytesMut,
    fields: Vec<Option<(u32, u32)>>,
}

impl Client<crate::database::DbStream> {
    /// Opens the granted database `name`; the host has logged in.
    pub fn connect(name: &str) -> Result<Self, Error> {
        Ok(Client::new(crate::database::connect(name)?))
    }
}

fn source(e: impl std::fmt::Display) -> Error {
    Error::Source(e.to_string())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// `message (SQLSTATE): detail` of an ErrorResponse body.
fn error_text(body: &[u8]) -> String {
    let (mut message, mut code, mut detail) = (String::new(), String::new(), String::new());
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'M' => message = value,
            b'C' => code = value,
            b'D' => detail = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    if detail.is_empty() {
        format!("{message} ({code})")
    } else {
        format!("{message} ({code}): {detail}")
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over a stream positioned after the server's first ReadyForQuery.
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            out: BytesMut::new(),
            fields: Vec::new(),
        }
    }

    fn send(&mut self) -> Result<(), Error> {
        self.stream
            .write_all(&self.out)
            .map_err(|e| Error::Io(format!("database: {e}")))?;
        self.out.clear();
        Ok(())
    }

    /// The next message: its type and the range of its body in `self.buf`.
    fn next(&mut self) -> Result<(u8, Range<usize>), Error> {
        loop {
            let avail = self.end - self.start;
            if avail >= 5 {
                let len = be_u32(&self.buf[self.start + 1..]) as usize;
                if !(4..=MAX_MESSAGE).contains(&len) {
                    return Err(Error::Source(format!(
                        "the server sent a message of {len} bytes"
                    )));
                }
                if avail > len {
                    let kind = self.buf[self.start];
                    let body = self.start + 5..self.start + 1 + len;
                    self.start = body.end;
                    return Ok((kind, body));
                }
                // make room for the whole message
                if self.buf.len() < len + 1 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    self.buf.resize(len + 1 + READ_CHUNK, 0);
                }
            }
            if self.start > 0 && self.buf.len() - self.end < READ_CHUNK / 2 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() + READ_CHUNK, 0);
            }
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .map_err(|e| Error::Io(format!("database: {e}")))?;
            if n == 0 {
                return Err(Error::Source("the database closed the connection".into()));
            }
            self.end += n;
        }
    }

    /// Reads up to ReadyForQuery after an ErrorResponse, then returns the error.
    fn drain_error(&mut self, body: Range<usize>) -> Error {
        let message = error_text(&self.buf[body]);
        loop {
            match self.next() {
                Ok((b'Z', _)) => break,
                Ok(_) => {}
                Err(e) => return e,
            }
        }
        Error::Source(message)
    }

    fn parse_fields(&mut self, body: &Range<usize>) -> Result<(), Error> {
        let b = &self.buf[body.clone()];
        let short = || Error::Source("a malformed DataRow".into());
        let count = be_i16(b.get(..2).ok_or_else(short)?).max(0) as usize;
        self.fields.clear();
        let mut at = 2;
        for _ in 0..count {
            let len = i32::from_be_bytes(b.get(at..at + 4).ok_or_else(short)?.try_into().unwrap());
            at += 4;
            if len < 0 {
                self.fields.push(None);
            } else {
                let end = at + len as usize;
                if end > b.len() {
                    return Err(short());
                }
                let base = body.start as u32;
                self.fields
                    .push(Some((base + at as u32, base + end as u32)));
                at = end;
            }
        }
        Ok(())
    }

    /// Runs `sql` with the simple query protocol and returns the rows of its last result
    /// set as text. For catalog queries and small answers.
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        frontend::query(sql, &mut self.out).map_err(source)?;
        self.send()?;
        let mut rows = Vec::new();
        loop {
            let (kind, body) = self.next()?;
            match kind {
                b'T' => rows.clear(),
                b'D' => {
                    self.parse_fields(&body)?;
                    let row = (0..self.fields.len())
                        .map(|i| {
                            self.fields[i].map(|(s, e)| {
                                String::from_utf8_lossy(&self.buf[s as usize..e as usize])
                                    .into_owned()
                            })
                        })
                        .collect();
                    rows.push(row);
                }
                b'E' => return Err(self.drain_error(body)),
                b'Z' => return Ok(rows),
                b'G' | b'H' => {
                    return Err(Error::Internal(
                        "simple_query cannot run COPY; use copy_out_binary".into(),
                    ));
                }
                _ => {}
            }
        }
    }

    /// Describes what `sql` would return, without running it.
    pub fn describe(&mut self, sql: &str, params: usize) -> Result<Vec<ResultColumn>, Error> {
        frontend::parse("", sql, std::iter::repeat_n(0u32, params), &mut self.out)
            .map_err(source)?;
        frontend::describe(b'S', "", &mut self.out).map_err(source)?;
        frontend::sync(&mut self.out);
        self.send()?;
        let mut columns = Vec::new();
        loop {
            let (kind, body) = self.next()?;
            match kind {
                b'T' => columns = self.row_description(&body)?,
                b'n' => columns.clear(),
                b'E' => return Err(self.drain_error(body)),
                b'Z' => return Ok(columns),
                _ => {}
            }
        }
    }

    fn row_description(&self, body: &Range<usize>) -> Result<Vec<ResultColumn>, Error> {
        let b = &self.buf[body.clone()];
        let short = || Error::Source("a malformed RowDescription".into());
        let count = be_i16(b.get(..2).ok_or_else(short)?).max(0) as usize;
        let mut at = 2;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let end = at + b[at..].iter().position(|&c| c == 0).ok_or_else(short)?;
            let name = String::from_utf8_lossy(&b[at..end]).into_owned();
            at = end + 1;
            let f = b.get(at..at + 18).ok_or_else(short)?;
            out.push(ResultColumn {
                name,
                type_oid: be_u32(&f[6..10]),
                typmod: i32::from_be_bytes(f[12..16].try_into().unwrap()),
            });
            at += 18;
        }
        Ok(out)
    }

    /// Runs `sql` with the extended protocol: `params` bound as text (`None` is NULL),
    /// result column `i` in binary when `binary[i]` (text otherwise; missing entries are
    /// binary). `on_row` gets every row. Returns the number of rows.
    pub fn query_rows(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
        binary: &[bool],
        on_row: &mut dyn FnMut(&Row<'_>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        frontend::parse(
            "",
            sql,
            std::iter::repeat_n(0u32, params.len()),
            &mut self.out,
        )
        .map_err(source)?;
        let formats: Vec<i16> = binary.iter().map(|b| i16::from(*b)).collect();
        let result_formats: Vec<i16> = if binary.is_empty() { vec![1] } else { formats };
        frontend::bind(
            "",
            "",
            std::iter::once(0i16),
            params.iter(),
            |p, buf| match p {
                Some(v) => {
                    buf.extend_from_slice(v.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            result_formats,
            &mut self.out,
        )
        .map_err(|e| match e {
            frontend::BindError::Conversion(e) => Error::Internal(e.to_string()),
            frontend::BindError::Serialization(e) => Error::Internal(e.to_string()),
        })?;
        frontend::execute("", 0, &mut self.out).map_err(source)?;
        frontend::sync(&mut self.out);
        self.send()?;
        let mut rows = 0;
        let mut failed = None;
        loop {
            let (kind, body) = self.next()?;
            match kind {
                b'D' if failed.is_none() => {
                    self.parse_fields(&body)?;
                    let row = Row {
                        data: &self.buf,
                        fields: &self.fields,
                    };
                    if let Err(e) = on_row(&row) {
                        failed = Some(e);
                    }
                    rows += 1;
                }
                b'E' => return Err(self.drain_error(body)),
                b'Z' => return failed.map_or(Ok(rows), Err),
                _ => {}
            }
        }
    }

    /// Runs `COPY (<select>) TO STDOUT (FORMAT binary)` and hands every tuple to
    /// `on_row` (binary values). Returns the number of rows.
    pub fn copy_out_binary(
        &mut self,
        select: &str,
        on_row: &mut dyn FnMut(&Row<'_>) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let sql = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
        frontend::query(&sql, &mut self.out).map_err(source)?;
        self.send()?;
        let mut rows = 0u64;
        let mut header_seen = false;
        // bytes of a tuple that spans CopyData messages
        let mut carry: Vec<u8> = Vec::new();
        let mut fields: Vec<Option<(u32, u32)>> = Vec::new();
        let mut failed: Option<Error> = None;
        let mut done = false;
        loop {
            let (kind, body) = self.next()?;
            match kind {
                b'd' if failed.is_none() && !done => {
                    let data: &[u8] = if carry.is_empty() {
                        &self.buf[body.clone()]
                    } else {
                        carry.extend_from_slice(&self.buf[body.clone()]);
                        &carry
                    };
                    let mut at = 0;
                    if !header_seen {
                        if data.len() < 19 {
                            if carry.is_empty() {
                                carry.extend_from_slice(&self.buf[body.clone()]);
                            }
                            continue;
                        }
                        if &data[..11] != b"PGCOPY\n\xff\r\n\0" {
                            failed = Some(Error::Source("COPY binary: bad signature".into()));
                            continue;
                        }
                        let ext = be_u32(&data[15..19]) as usize;
                        at = 19 + ext;
                        header_seen = true;
                    }
                    let consumed = loop {
                        let Some(count) = data.get(at..at + 2).map(be_i16) else {
                            break at;
                        };
                        if count == -1 {
                            done = true;
                            break data.len();
                        }
                        fields.clear();
                        let mut p = at + 2;
                        let mut complete = true;
                        for _ in 0..count.max(0) {
                            let Some(len) = data.get(p..p + 4) else {
                                complete = false;
                                break;
                            };
                            let len = i32::from_be_bytes(len.try_into().unwrap());
                            p += 4;
                            if len < 0 {
                                fields.push(None);
                            } else {
                                let end = p + len as usize;
                                if end > data.len() {
                                    complete = false;
                                    break;
                                }
                                fields.push(Some((p as u32, end as u32)));
                                p = end;
                            }
                        }
                        if !complete {
                            break at;
                        }
                        let row = Row {
                            data,
                            fields: &fields,
                        };
                        if let Err(e) = on_row(&row) {
                            failed = Some(e);
                            break data.len();
                        }
                        rows += 1;
                        at = p;
                    };
                    if carry.is_empty() {
                        carry.extend_from_slice(&self.buf[body.start + consumed..body.end]);
                    } else {
                        carry.drain(..consumed);
                    }
                }
                b'E' => return Err(self.drain_error(body)),
                b'Z' => {
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    if !done || !carry.is_empty() {
                        return Err(Error::Source("COPY binary: the data ended early".into()));
                    }
                    return Ok(rows);
                }
                _ => {}
            }
        }
    }

    /// Runs statements that return nothing (`BEGIN ...`, `COMMIT`).
    pub fn execute(&mut self, sql: &str) -> Result<(), Error> {
        self.simple_query(sql).map(|_| ())
    }
}

/// Sends the protocol's Terminate when the client is dropped.
impl<S: Read + Write> Drop for Client<S> {
    fn drop(&mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that answers with prepared bytes, `chunk` at a time.
    struct Canned {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
        written: Vec<u8>,
    }
    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn tuple(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                Some(v) => {
                    t.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    t.extend_from_slice(v);
                }
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        t
    }

    #[test]
    fn copy_binary_tuples_split_across_messages_and_reads() {
        let mut payload = b"PGCOPY\n\xff\r\n\0".to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        for i in 0..50i64 {
            payload.extend(tuple(&[Some(&i.to_be_bytes()), None, Some(b"abc")]));
        }
        payload.extend_from_slice(&(-1i16).to_be_bytes());
        for split in [7usize, 64, 1000] {
            let mut data = msg(b'H', &[1, 0, 3, 0, 1, 0, 1, 0, 1]);
            for part in payload.chunks(split) {
                data.extend(msg(b'd', part));
            }
            data.extend(msg(b'c', b""));
            data.extend(msg(b'C', b"COPY 50\0"));
            data.extend(msg(b'Z', b"I"));
            for chunk in [3usize, 100, 1 << 20] {
                let mut c = Client::new(Canned {
                    data: data.clone(),
                    at: 0,
                    chunk,
                    written: vec![],
                });
                let mut seen = Vec::new();
                let n = c
                    .copy_out_binary("SELECT 1", &mut |row| {
                        assert_eq!(row.len(), 3);
                        assert!(row.get(1).is_none());
                        assert_eq!(row.get(2), Some(&b"abc"[..]));
                        seen.push(i64::from_be_bytes(row.get(0).unwrap().try_into().unwrap()));
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(n, 50);
                assert_eq!(
                    seen,
                    (0..50).collect::<Vec<_>>(),
                    "split {split} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn an_error_response_is_read_to_ready_for_query() {
        let mut data = msg(b'E', b"SERROR\0C42P01\0Mrelation \"x\" does not exist\0\0");
        data.extend(msg(b'Z', b"I"));
        data.extend(msg(b'T', &[0, 0]));
        data.extend(msg(b'D', &tuple(&[Some(b"1")])[..]));
        data.extend(msg(b'Z', b"I"));
        let mut c = Client::new(Canned {
            data,
            at: 0,
            chunk: 5,
            written: vec![],
        });
        let err = c.simple_query("SELECT * FROM x").unwrap_err();
        assert_eq!(
            err,
            Error::Source("relation \"x\" does not exist (42P01)".into())
        );
        // the session is usable again
        assert_eq!(
            c.simple_query("SELECT 1").unwrap(),
            vec![vec![Some("1".to_string())]]
        );
    }
}
