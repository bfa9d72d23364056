//! Layer compression: detect gzip / zstd / none by magic bytes (never by media type,
//! which registries get wrong) and stream through the matching decoder; encoders for
//! the layers `diff` writes.

use std::io::{self, Cursor, Read, Write};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// A layer compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952); the default for new layers, as every registry and runtime reads it.
    #[default]
    Gzip,
    /// zstd frames.
    Zstd,
}

/// Errors from recognizing a compressed stream.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// Reading the first bytes failed.
    #[error("reading the layer's first bytes: {0}")]
    Read(#[source] io::Error),
    /// A format OCI layers do not use (xz, bzip2).
    #[error("unsupported layer compression {0}")]
    Unsupported(&'static str),
    /// The zstd decoder could not start.
    #[error("starting the zstd decoder: {0}")]
    Zstd(#[source] io::Error),
}

impl Compression {
    /// The OCI layer media type for a layer in this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Recognizes the format from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Result<Compression, CompressionError> {
        if head.starts_with(GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if head.starts_with(XZ_MAGIC) {
            Err(CompressionError::Unsupported("xz"))
        } else if head.starts_with(BZIP2_MAGIC) {
            Err(CompressionError::Unsupported("bzip2"))
        } else {
            Ok(Compression::None)
        }
    }

    /// Wraps `out` in an encoder for this format; call [`Compressor::finish`] at the end.
    pub fn compressor<W: Write>(self, out: W) -> io::Result<Compressor<W>> {
        Ok(match self {
            Compression::None => Compressor::Plain(out),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::Encoder::new(out, 3)?),
        })
    }
}

/// The stream with its peeked first bytes put back in front.
type Peeked<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// A streaming decoder chosen by magic bytes.
pub enum Decompressor<R: Read> {
    /// Uncompressed input, passed through.
    Plain(Peeked<R>),
    /// gzip, including multi-member streams.
    Gzip(Box<flate2::read::MultiGzDecoder<Peeked<R>>>),
    /// zstd, including multi-frame streams.
    Zstd(Box<zstd::Decoder<'static, io::BufReader<Peeked<R>>>>),
}

impl<R: Read> Read for Decompressor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressor::Plain(r) => r.read(buf),
            Decompressor::Gzip(r) => r.read(buf),
            Decompressor::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decompressor<R> {
    /// Peeks at the stream's first bytes and starts the matching decoder.
    pub fn new(mut input: R) -> Result<(Compression, Self), CompressionError> {
        let mut head = Vec::with_capacity(8);
        (&mut input)
            .take(8)
            .read_to_end(&mut head)
            .map_err(CompressionError::Read)?;
        let kind = Compression::detect(&head)?;
        let peeked = Cursor::new(head).chain(input);
        let dec = match kind {
            Compression::None => Decompressor::Plain(peeked),
            Compression::Gzip => {
                Decompressor::Gzip(Box::new(flate2::read::MultiGzDecoder::new(peeked)))
            }
            Compression::Zstd => Decompressor::Zstd(Box::new(
                zstd::Decoder::new(peeked).map_err(CompressionError::Zstd)?,
            )),
        };
        Ok((kind, dec))
    }
}

/// Detects the compression of `input` and returns a boxed streaming decoder for it.
pub fn decompressor<R: Read + Send + 'static>(
    input: R,
) -> Result<(Compression, Box<dyn Read + Send>), CompressionError> {
    let (kind, dec) = Decompressor::new(input)?;
    Ok((kind, Box::new(dec)))
}

/// A streaming encoder; `finish` writes the trailer and returns the inner writer.
pub enum Compressor<W: Write> {
    /// No compression.
    Plain(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Compressor<W> {
    /// Ends the compressed stream and hands back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(kind: Compression) {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut enc = kind.compressor(Vec::new()).expect("encoder");
        enc.write_all(&data).expect("write");
        let packed = enc.finish().expect("finish");
        let (found, mut dec) = decompressor(Cursor::new(packed)).expect("detect");
        assert_eq!(found, kind);
        let mut out = Vec::new();
        dec.read_to_end(&mut out).expect("decode");
        assert_eq!(out, data);
    }

    #[test]
    fn every_format_round_trips_and_is_detected_by_magic() {
        round_trip(Compression::None);
        round_trip(Compression::Gzip);
        round_trip(Compression::Zstd);
    }

    #[test]
    fn short_and_empty_streams_are_plain() {
        let (kind, mut dec) = decompressor(Cursor::new(vec![1u8])).expect("detect");
        assert_eq!(kind, Compression::None);
        let mut out = Vec::new();
        dec.read_to_end(&mut out).expect("read");
        assert_eq!(out, vec![1u8]);
        assert_eq!(Compression::detect(&[]).expect("empty"), Compression::None);
    }

    #[test]
    fn xz_and_bzip2_are_refused() {
        assert!(matches!(
            Compression::detect(XZ_MAGIC),
            Err(CompressionError::Unsupported("xz"))
        ));
        assert!(matches!(
            Compression::detect(b"BZh91AY"),
            Err(CompressionError::Unsupported(_))
        ));
    }
}
