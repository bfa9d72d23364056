//! A layer's uncompressed stream, decompressed and hashed on a thread of its own.
//!
//! Inflating gzip is the slowest step of unpacking a big layer; running it (with the
//! DiffID's sha256) beside the thread that parses the tar and writes files lets the two
//! overlap. Chunks travel through a small bounded channel, so memory stays bounded
//! whatever the layer expands to.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use sha2::{Digest, Sha256};

use super::entry::read_full;
use super::ApplyError;
use crate::compression::{Compression, Decompressor};

/// Bytes per chunk handed from the decompressing thread to the consumer.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight: bounds the memory between the two threads.
const IN_FLIGHT: usize = 8;

/// What the whole uncompressed stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Uncompressed {
    /// `sha256:<hex>` of every uncompressed byte, padding after the tar end included.
    pub diff_id: String,
    /// Uncompressed bytes.
    pub size: u64,
    /// The compression found by magic bytes.
    pub compression: Compression,
}

/// Why streaming stopped, when `consume` itself did not fail.
enum ProducerEnd {
    /// Read to the end.
    Done(Uncompressed),
    /// The uncompressed stream went past the limit.
    OverLimit,
    /// The compression could not be handled (before any data was sent).
    Compression(crate::compression::CompressionError),
    /// A read failed; the error went to the consumer through the channel.
    ReadFailed,
    /// The consumer hung up early.
    Abandoned,
    /// The decompressing thread panicked.
    Panicked,
}

/// The consumer's end: reads the chunks in order, then EOF.
pub(crate) struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    /// The size-limit error reached the consumer.
    hit_limit: bool,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => (self.current, self.pos) = (chunk, 0),
                Ok(Err(e)) => {
                    self.hit_limit |= e.kind() == io::ErrorKind::FileTooLarge;
                    return Err(e);
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `consume` on the uncompressed stream of `reader` (gzip, zstd or plain) while
/// another thread decompresses and hashes it; reads what `consume` leaves (tar padding)
/// so the DiffID covers every byte. A stream over `max_size` fails with `SizeLimit`
/// whatever `consume` made of its truncation; an error `consume` met before reading up
/// to the limit is reported as it is.
pub(crate) fn stream_layer<T, E: From<ApplyError>>(
    reader: impl Read + Send,
    max_size: Option<u64>,
    consume: impl FnOnce(&mut Chunks) -> Result<T, E>,
) -> Result<(T, Uncompressed), E> {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    std::thread::scope(|s| {
        let producer = std::thread::Builder::new()
            .name("berth-inflate".into())
            .spawn_scoped(s, move || produce(reader, max_size, tx))
            .map_err(ApplyError::Read)?;
        let mut chunks = Chunks {
            rx,
            current: Vec::new(),
            pos: 0,
            hit_limit: false,
        };
        let consumed = consume(&mut chunks);
        let drained = match consumed {
            Ok(_) => io::copy(&mut chunks, &mut io::sink()).map(drop),
            Err(_) => Ok(()),
        };
        let hit_limit = chunks.hit_limit;
        drop(chunks); // an early stop hangs up, which ends the producer
        let end = producer.join().unwrap_or(ProducerEnd::Panicked);
        match end {
            ProducerEnd::OverLimit if hit_limit || consumed.is_ok() => Err(ApplyError::SizeLimit {
                limit: max_size.unwrap_or_default(),
            }
            .into()),
            ProducerEnd::Compression(e) => Err(ApplyError::Compression(e).into()),
            end => {
                let value = consumed?;
                drained.map_err(ApplyError::Read)?;
                match end {
                    ProducerEnd::Done(stream) => Ok((value, stream)),
                    // A failed read reaches the consumer as an error; this is a backstop.
                    _ => Err(ApplyError::Read(io::Error::other("layer stream ended early")).into()),
                }
            }
        }
    })
}

fn produce(
    reader: impl Read,
    max_size: Option<u64>,
    tx: SyncSender<io::Result<Vec<u8>>>,
) -> ProducerEnd {
    let (compression, mut dec) = match Decompressor::new(reader) {
        Ok(d) => d,
        Err(e) => return ProducerEnd::Compression(e),
    };
    let mut hash = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let n = match read_full(&mut dec, &mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e));
                return ProducerEnd::ReadFailed;
            }
        };
        size += n as u64;
        if max_size.is_some_and(|limit| size > limit) {
            let err = io::Error::new(io::ErrorKind::FileTooLarge, "layer size limit exceeded");
            let _ = tx.send(Err(err));
            return ProducerEnd::OverLimit;
        }
        chunk.truncate(n);
        hash.update(&chunk);
        if tx.send(Ok(chunk)).is_err() {
            return ProducerEnd::Abandoned;
        }
    }
    ProducerEnd::Done(Uncompressed {
        diff_id: format!("sha256:{}", hex::encode(hash.finalize())),
        size,
        compression,
    })
}

/// Fails unless the stream hashed to `expected` (when given).
pub(crate) fn check_diff_id(
    expected: Option<&String>,
    stream: &Uncompressed,
) -> Result<(), ApplyError> {
    match expected {
        Some(e) if *e != stream.diff_id => Err(ApplyError::DiffIdMismatch {
            expected: e.clone(),
            found: stream.diff_id.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    }

    #[test]
    fn consumer_sees_every_byte_and_the_digest_covers_what_it_left() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (head, stream) = stream_layer(&gzip(&data)[..], None, |r| {
            let mut head = vec![0u8; 1000];
            r.read_exact(&mut head).map_err(ApplyError::Read)?;
            Ok::<_, ApplyError>(head)
        })
        .expect("stream");
        assert_eq!(head, data[..1000]);
        assert_eq!(stream.size, data.len() as u64);
        assert_eq!(stream.compression, Compression::Gzip);
        assert_eq!(
            stream.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
    }

    #[test]
    fn size_limit_wins_over_what_the_consumer_made_of_the_cut() {
        let data = vec![0u8; 10 << 20];
        let err = stream_layer(&gzip(&data)[..], Some(1 << 20), |r| {
            io::copy(r, &mut io::sink()).map_err(ApplyError::Read)
        })
        .expect_err("fails");
        assert!(matches!(err, ApplyError::SizeLimit { limit } if limit == 1 << 20));
    }

    #[test]
    fn an_error_met_before_the_limit_is_not_called_a_size_limit() {
        // The producer runs past the limit (chunks in flight) while the consumer, which
        // has read only the start, fails on its own: its error is the one reported.
        let data = vec![0u8; 64 << 20];
        let err = stream_layer(&data[..], Some(CHUNK as u64 + 1), |r| {
            let mut head = vec![0u8; 1000];
            r.read_exact(&mut head).map_err(ApplyError::Read)?;
            std::thread::sleep(std::time::Duration::from_millis(100));
            Err::<(), _>(ApplyError::InvalidPath { path: "x".into() })
        })
        .expect_err("fails");
        assert!(matches!(err, ApplyError::InvalidPath { .. }), "{err}");
    }

    #[test]
    fn a_consumer_error_stops_the_producer() {
        let data = vec![7u8; 64 << 20];
        let err = stream_layer(&data[..], None, |_| {
            Err::<(), _>(ApplyError::InvalidPath { path: "x".into() })
        })
        .expect_err("fails");
        assert!(matches!(err, ApplyError::InvalidPath { .. }));
    }

    #[test]
    fn a_corrupt_stream_is_a_read_error() {
        let mut gz = gzip(&vec![1u8; 1 << 20]);
        let mid = gz.len() / 2;
        gz[mid..].iter_mut().for_each(|b| *b = 0x55);
        let err = stream_layer(&gz[..], None, |r| {
            io::copy(r, &mut io::sink()).map_err(ApplyError::Read)
        })
        .expect_err("fails");
        assert!(matches!(err, ApplyError::Read(_)), "{err}");
    }
}
