//! Image archives: import OCI image layouts (tar or directory) and `docker save` tars;
//! export OCI layout tars and docker-archive tars.
//!
//! Import is all-or-nothing: every blob is hashed into `ingest/` and the whole image
//! graph (index → manifests → config and layers) is checked before anything is
//! published or named. A bad archive leaves the store as it was.

mod export;
mod import;
mod source;

pub use export::{export, ExportFormat};
pub use import::{import, import_with, BeforeNaming, HookError, ImportOptions, Imported};

use std::io::{BufRead, BufReader, Read};

/// Wraps `r` in a decompressor chosen by magic bytes (gzip, zstd, or none).
pub fn decompressed<'a>(r: impl Read + Send + 'a) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(br)?)
    } else {
        Box::new(br)
    })
}
