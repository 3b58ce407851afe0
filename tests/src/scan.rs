//! Reading another process's memory, as an attacker with root would: every
//! readable mapping listed in `/proc/PID/smaps`, read through
//! `/proc/PID/mem`, searched for byte strings.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// One mapping of the target.
#[derive(Debug, Clone)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub path: String,
    /// The `VmFlags` of smaps (`lo` locked, `dd` dont-dump, `wf` wipe-on-fork, ...).
    pub flags: Vec<String>,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn readable(&self) -> bool {
        self.perms.starts_with('r')
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The mappings of `pid`, with their VmFlags.
pub fn regions(pid: u32) -> io::Result<Vec<Region>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut out: Vec<Region> = Vec::new();
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(r) = out.last_mut() {
                r.flags = flags.split_whitespace().map(str::to_owned).collect();
            }
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if perms.len() != 4 {
            continue;
        }
        let path = f.nth(3).map(str::to_owned).unwrap_or_default();
        let path = match line.find(&path) {
            Some(i) if !path.is_empty() => line[i..].to_owned(),
            _ => path,
        };
        out.push(Region {
            start,
            end,
            perms: perms.to_owned(),
            path,
            flags: Vec::new(),
        });
    }
    Ok(out)
}

/// Everything read from one process.
#[derive(Debug)]
pub struct Memory {
    pub pid: u32,
    pub regions: Vec<Region>,
    /// The bytes of each readable region (empty where reading failed).
    pub bytes: Vec<Vec<u8>>,
    /// Regions that were readable by their permissions but could not be read.
    pub failed: Vec<(Region, String)>,
}

impl Memory {
    /// Total bytes read.
    pub fn bytes_read(&self) -> usize {
        self.bytes.iter().map(Vec::len).sum()
    }

    /// Addresses where `needle` occurs.
    pub fn find(&self, needle: &[u8]) -> Vec<(u64, &Region)> {
        let mut hits = Vec::new();
        for (r, b) in self.regions.iter().zip(&self.bytes) {
            for off in find_all(b, needle) {
                hits.push((r.start + off as u64, r));
            }
        }
        hits
    }

    /// Every occurrence of every needle (at least 8 bytes each), in one
    /// pass over each mapping: `(needle index, address, region)`.
    pub fn find_many(&self, needles: &[Vec<u8>]) -> Vec<(usize, u64, &Region)> {
        let mut hits = Vec::new();
        for (r, b) in self.regions.iter().zip(&self.bytes) {
            for (i, off) in find_many(b, needles) {
                hits.push((i, r.start + off as u64, r));
            }
        }
        hits
    }

    /// The region holding `addr`.
    pub fn region_of(&self, addr: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(addr))
    }
}

/// Reads every readable mapping of `pid` (skipping `[vvar]`/`[vsyscall]`,
/// which are not process memory).
pub fn read(pid: u32) -> io::Result<Memory> {
    read_where(pid, |_| true)
}

/// Reads the mappings of `pid` where data made at run time can be: every
/// readable mapping but the read-only images of files (program and library
/// code and constants, which cannot hold a value computed at run time).
/// Several times faster than [`read`] on a process linked with libcrypto.
pub fn read_data(pid: u32) -> io::Result<Memory> {
    read_where(pid, |r| {
        r.path.is_empty() || r.path.starts_with('[') || r.perms.as_bytes().get(1) == Some(&b'w')
    })
}

fn read_where(pid: u32, keep: impl Fn(&Region) -> bool) -> io::Result<Memory> {
    let regions = regions(pid)?;
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let mut bytes = Vec::with_capacity(regions.len());
    let mut failed = Vec::new();
    for r in &regions {
        if !r.readable()
            || !keep(r)
            || r.path == "[vvar]"
            || r.path == "[vsyscall]"
            || r.path == "[vvar_vclock]"
        {
            bytes.push(Vec::new());
            continue;
        }
        let mut buf = vec![0u8; usize::try_from(r.len()).unwrap_or(0)];
        match read_fully(&mem, &mut buf, r.start) {
            Ok(()) => bytes.push(buf),
            Err(e) => {
                failed.push((r.clone(), e.to_string()));
                bytes.push(Vec::new());
            }
        }
    }
    Ok(Memory {
        pid,
        regions,
        bytes,
        failed,
    })
}

fn read_fully(f: &File, buf: &mut [u8], mut at: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], at)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        done += n;
        at += n as u64;
    }
    Ok(())
}

/// Every offset of `needle` in `hay`.
pub fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let Some((&first, rest)) = needle.split_first() else {
        return out;
    };
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => break,
            Some(p) => {
                let at = i + p;
                if &hay[at + 1..at + needle.len()] == rest {
                    out.push(at);
                }
                i = at + 1;
            }
        }
    }
    out
}

/// Finds every occurrence of every needle (each at least 8 bytes long) in
/// one pass: each position's next 8 bytes are looked up among the needles'
/// first 8. Returns `(needle index, offset)` pairs.
pub fn find_many(hay: &[u8], needles: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let mut by_prefix: std::collections::HashMap<u64, Vec<usize>> = Default::default();
    for (i, n) in needles.iter().enumerate() {
        assert!(n.len() >= 8, "needle {i} is shorter than 8 bytes");
        let mut p = [0u8; 8];
        p.copy_from_slice(&n[..8]);
        by_prefix.entry(u64::from_ne_bytes(p)).or_default().push(i);
    }
    let mut out = Vec::new();
    if hay.len() < 8 {
        return out;
    }
    for at in 0..=hay.len() - 8 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&hay[at..at + 8]);
        if let Some(ids) = by_prefix.get(&u64::from_ne_bytes(p)) {
            for &i in ids {
                let n = &needles[i];
                if hay.len() - at >= n.len() && &hay[at..at + n.len()] == n.as_slice() {
                    out.push((i, at));
                }
            }
        }
    }
    out
}

/// Finds every occurrence of each needle in a file's bytes (a core dump).
pub fn find_in_file(path: &std::path::Path, needle: &[u8]) -> io::Result<usize> {
    let bytes = std::fs::read(path)?;
    Ok(find_all(&bytes, needle).len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_all_finds_overlapping_and_edge_matches() {
        assert_eq!(find_all(b"aaaa", b"aa"), [0, 1, 2]);
        assert_eq!(find_all(b"xyzabc", b"abc"), [3]);
        assert_eq!(find_all(b"abc", b"abcd"), Vec::<usize>::new());
        assert_eq!(find_all(b"", b"a"), Vec::<usize>::new());
    }

    #[test]
    fn reading_our_own_memory_finds_a_planted_value() {
        let planted: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let boxed = std::hint::black_box(planted.clone());
        let mem = read(std::process::id()).unwrap();
        assert!(mem.bytes_read() > 0);
        assert!(
            mem.find(&boxed).len() >= 2,
            "the planted bytes (two heap copies) must be found"
        );
    }
}
