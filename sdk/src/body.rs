//! Bodies: bytes in memory, a stream from the node (a request's, or a fetched response's), or
//! a writer that produces a response piece by piece.

use std::io::{self, Read, Write};

use crate::Result;

/// A request or response body.
///
/// Build one from bytes or text (`Body::from("hi")`), JSON ([`Body::json`]) or a writer
/// ([`Body::stream`]); read one whole ([`Body::bytes`], [`Body::text`], [`Body::json_as`]) or as
/// it arrives ([`Body::into_reader`]).
///
/// ```
/// use std::io::Read as _;
/// let body = edge::Body::from("hello");
/// assert_eq!(body.text().unwrap(), "hello");
///
/// let mut reader = edge::Body::from(vec![1, 2, 3]).into_reader();
/// let mut first = [0; 2];
/// reader.read_exact(&mut first).unwrap();
/// assert_eq!(first, [1, 2]);
/// ```
pub struct Body {
    kind: Kind,
}

/// Bytes a writer body gathers before they go to the host (each flush sends them sooner).
const WRITER_BUFFER: usize = 8 * 1024;

/// What produces a streamed response body.
type Producer = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()>>;

enum Kind {
    Bytes(Vec<u8>),
    Stream(Box<dyn Read>),
    Writer(Producer),
}

impl Body {
    /// No bytes.
    pub fn empty() -> Self {
        Self::from(Vec::new())
    }

    /// `value` as JSON.
    ///
    /// # Errors
    /// `value` cannot be serialised.
    ///
    /// ```
    /// let body = edge::Body::json(&serde_json::json!({ "ok": true })).unwrap();
    /// assert_eq!(body.text().unwrap(), r#"{"ok":true}"#);
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        Ok(Self::from(serde_json::to_vec(value)?))
    }

    /// A body that `produce` writes once the response's headers are on their way: each
    /// `flush` sends what was written so far, so the client sees it before the rest exists.
    /// An error from `produce` cuts the body off (the client sees an incomplete response,
    /// not a complete wrong one).
    ///
    /// ```
    /// use std::io::Write as _;
    /// let body = edge::Body::stream(|out| {
    ///     for i in 1..=3 {
    ///         writeln!(out, "chunk {i}")?;
    ///         out.flush()?;
    ///     }
    ///     Ok(())
    /// });
    /// assert_eq!(body.text().unwrap(), "chunk 1\nchunk 2\nchunk 3\n");
    /// ```
    pub fn stream(produce: impl FnOnce(&mut dyn Write) -> io::Result<()> + 'static) -> Self {
        Self {
            kind: Kind::Writer(Box::new(produce)),
        }
    }

    /// A body read from `reader` as it is consumed.
    pub fn from_reader(reader: impl Read + 'static) -> Self {
        Self {
            kind: Kind::Stream(Box::new(reader)),
        }
    }

    /// The whole body.
    ///
    /// # Errors
    /// Reading the stream failed (the client or origin went away, or the body was over the
    /// node's limit).
    pub fn bytes(self) -> io::Result<Vec<u8>> {
        match self.kind {
            Kind::Bytes(bytes) => Ok(bytes),
            Kind::Stream(mut reader) => {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
            Kind::Writer(produce) => {
                let mut bytes = Vec::new();
                produce(&mut bytes)?;
                Ok(bytes)
            }
        }
    }

    /// The whole body as UTF-8 text.
    ///
    /// # Errors
    /// As [`Body::bytes`], or the bytes are not UTF-8.
    pub fn text(self) -> io::Result<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))
    }

    /// The whole body as JSON of type `T`.
    ///
    /// # Errors
    /// As [`Body::bytes`], or the JSON does not match `T` (serde's message names the field,
    /// line and column: good to send back in a 400).
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Point { x: i32, y: i32 }
    /// let p: Point = edge::Body::from(r#"{"x": 1, "y": 2}"#).json_as().unwrap();
    /// assert_eq!((p.x, p.y), (1, 2));
    /// let bad = edge::Body::from(r#"{"x": 1}"#).json_as::<Point>().unwrap_err();
    /// assert!(bad.to_string().contains("missing field `y`"));
    /// ```
    pub fn json_as<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        Ok(serde_json::from_slice(&self.bytes()?)?)
    }

    /// The body as a reader, reading from the network as it is read.
    pub fn into_reader(self) -> Box<dyn Read> {
        match self.kind {
            Kind::Bytes(bytes) => Box::new(io::Cursor::new(bytes)),
            Kind::Stream(reader) => reader,
            Kind::Writer(produce) => {
                // Only a body made here, read here (in a test): run it to the end.
                let mut bytes = Vec::new();
                match produce(&mut bytes) {
                    Ok(()) => Box::new(io::Cursor::new(bytes)),
                    Err(e) => Box::new(Failed(Some(e))),
                }
            }
        }
    }

    /// The length, when known without reading (bytes in memory).
    pub fn len_hint(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes.len() as u64),
            _ => None,
        }
    }

    /// The bytes, for a body that is bytes in memory.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn bytes_in_memory(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Writes the whole body to `out` (the host's stream, where every write is a host call):
    /// bytes at once, a stream through a stack buffer, a writer's small writes gathered until
    /// it flushes.
    pub(crate) fn write_to(self, out: &mut impl Write) -> io::Result<()> {
        match self.kind {
            Kind::Bytes(bytes) => out.write_all(&bytes),
            Kind::Stream(reader) => copy(reader, out),
            Kind::Writer(produce) => {
                let mut buffered = io::BufWriter::with_capacity(WRITER_BUFFER, &mut *out);
                produce(&mut buffered)?;
                buffered.flush()
            }
        }
        .and_then(|()| out.flush())
    }
}

/// `io::copy`, kept out of line: its 8 KiB stack buffer would otherwise sit in the frame of
/// every response's writer, pushing the rest of the stack two pages deeper, and every page a
/// request touches is a page the node resets after it (benches/README.md).
#[inline(never)]
fn copy(mut reader: Box<dyn Read>, out: &mut impl Write) -> io::Result<()> {
    io::copy(&mut reader, out).map(drop)
}

struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(|| io::ErrorKind::Other.into()))
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Bytes(bytes) => write!(f, "Body({} bytes)", bytes.len()),
            Kind::Stream(_) => f.write_str("Body(stream)"),
            Kind::Writer(_) => f.write_str("Body(writer)"),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            kind: Kind::Bytes(bytes),
        }
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Self::from(bytes.to_vec())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::from(text.into_bytes())
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Self::from(text.as_bytes())
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Self::empty()
    }
}
