//! A gzip bomb (2 GiB of zeros in a couple of MiB) goes through with bounded memory,
//! and `max_size` stops it early. Its own test binary, so peak RSS is this test's alone.

mod common;

use std::io::{Cursor, Write};

use berth_fs::apply::{apply_layer, ApplyError, ApplyOptions};

const BOMB: u64 = 2 << 30;

/// A multi-member gzip stream (as `cat a.gz b.gz` makes): the header, then one
/// compressed MiB of zeros repeated, which is quick to build.
fn bomb() -> Vec<u8> {
    let gzip = |data: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(data).expect("compress");
        gz.finish().expect("finish")
    };
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").expect("path");
    h.set_size(BOMB);
    h.set_mode(0o644);
    h.set_cksum();
    let mut packed = gzip(h.as_bytes());
    let mib = gzip(&vec![0u8; 1 << 20]);
    // The file's data, then (in the final MiB) tar's end-of-archive zero blocks.
    for _ in 0..(BOMB >> 20) + 1 {
        packed.extend_from_slice(&mib);
    }
    packed
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("number")
}

#[test]
fn a_gzip_bomb_streams_in_bounded_memory_and_max_size_stops_it() {
    if !common::have_root() {
        return;
    }
    let packed = bomb();
    assert!(
        packed.len() < 16 << 20,
        "bomb is small compressed: {}",
        packed.len()
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let opts = ApplyOptions {
        max_size: Some(64 << 20),
        ..Default::default()
    };
    let err = apply_layer(Cursor::new(&packed), tmp.path(), &opts).expect_err("limit");
    assert!(
        matches!(err, ApplyError::SizeLimit { limit } if limit == 64 << 20),
        "{err}"
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let stats =
        apply_layer(Cursor::new(&packed), tmp.path(), &ApplyOptions::default()).expect("apply");
    assert!(stats.size > BOMB);
    let md = std::fs::metadata(tmp.path().join("zeros")).expect("file");
    assert_eq!(md.len(), BOMB);
    let peak = peak_rss_kib();
    assert!(
        peak < 256 << 10,
        "peak RSS {peak} KiB: the layer was buffered"
    );
}
