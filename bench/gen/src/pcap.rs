//! Classic pcap files (not pcapng): a 24-byte file header, then a 16-byte record header per
//! frame. What `tcpdump -r`, Wireshark and DPDK's net_pcap read.

use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Link type Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65_535;

/// The 24-byte header of a little-endian, microsecond pcap file.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs: 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// The 16-byte header of one record.
pub fn record_header(ts_ns: u64, len: usize) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1_000) as u32).to_le_bytes());
    let caplen = (len as u32).min(SNAPLEN);
    h[8..12].copy_from_slice(&caplen.to_le_bytes());
    h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Writes frames to a pcap file, buffered.
pub struct PcapWriter<W: Write> {
    out: BufWriter<W>,
    frames: u64,
}

impl PcapWriter<std::fs::File> {
    pub fn create(path: &Path) -> io::Result<Self> {
        PcapWriter::new(std::fs::File::create(path)?)
    }
}

impl<W: Write> PcapWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, w);
        out.write_all(&file_header())?;
        Ok(PcapWriter { out, frames: 0 })
    }

    /// One frame seen at `ts_ns` (any epoch: replays only use the differences).
    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        self.out.write_all(&record_header(ts_ns, frame.len()))?;
        self.out
            .write_all(&frame[..frame.len().min(SNAPLEN as usize)])?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// The frames of a classic little-endian pcap file (tests, and the bench's checks).
pub fn read_frames(data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    if data.len() < 24 || data[0..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return frames;
    }
    let mut at = 24;
    while at + 16 <= data.len() {
        let len =
            u32::from_le_bytes([data[at + 8], data[at + 9], data[at + 10], data[at + 11]]) as usize;
        if at + 16 + len > data.len() {
            break;
        }
        frames.push(&data[at + 16..at + 16 + len]);
        at += 16 + len;
    }
    frames
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(1_500_000_000, &[1, 2, 3]).unwrap();
        w.write(2_000_001_000, &[9; 60]).unwrap();
        assert_eq!(w.frames(), 2);
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 60);
        assert_eq!(&bytes[24..28], &1u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &500_000u32.to_le_bytes());
        let frames = read_frames(&bytes);
        assert_eq!(frames, vec![&[1u8, 2, 3][..], &[9u8; 60][..]]);
    }
}
