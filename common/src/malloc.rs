//! glibc's malloc under a seccomp filter.
//!
//! A filter allows the system calls malloc makes as its heaps grow and
//! shrink (`brk`, `mmap`, `mprotect`, `mremap`, `munmap`), and nothing that
//! opens a file. One path of glibc's malloc does open a file: the first time
//! a thread's arena gives memory back (`heap_trim`, then `shrink_heap`),
//! glibc reads `/proc/sys/vm/overcommit_memory` once to choose between
//! `MADV_DONTNEED` and a fresh `PROT_NONE` mapping. Under a filter that kills
//! on `openat`, the first `free` that shrinks a thread's heap would end the
//! process. [`settle_for_sandbox`] turns trimming off (`M_TRIM_THRESHOLD` at
//! its maximum), before the filter: no heap is ever shrunk, so that path is
//! never taken, and neither is the `madvise` it would make. Freed memory
//! stays with the process for reuse; neither program's heap holds more
//! than some hundreds of KiB at its peak.
//!
//! [`exercise`] is the `heap` selftest of both programs (the "every rule is
//! needed" suites): glibc made to take, inside the sandbox, each path that
//! makes a system call, so that each rule it needs is shown needed and a
//! path the filter would kill (the trim's `openat`) shows up as a kill.

use std::ffi::c_int;

/// Turns glibc's heap trimming off for the life of the process. Call before
/// the seccomp filter, and before any thread that allocates exists.
pub fn settle_for_sandbox() -> std::io::Result<()> {
    // SAFETY: mallopt takes two integers and changes a malloc parameter.
    if unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, c_int::MAX) } == 1 {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "glibc refused mallopt(M_TRIM_THRESHOLD)",
        ))
    }
}

/// glibc's chunk header flag for a chunk of a thread's arena (not the main
/// heap): bit 2 of the size word just before the block.
const NON_MAIN_ARENA: usize = 0x4;

/// Whether `p`, a block just returned by glibc's `malloc` and smaller than
/// its mmap threshold, comes from a thread's arena.
///
/// # Safety
/// `p` must be a live block from glibc's `malloc`.
unsafe fn in_thread_arena(p: *mut libc::c_void) -> bool {
    // SAFETY: glibc keeps the chunk's size word in the 8 bytes before every
    // block it returns (caller's contract).
    let size = unsafe { p.cast::<usize>().sub(1).read() };
    size & NON_MAIN_ARENA != 0
}

/// Makes glibc's malloc, on the calling thread, map a large block, grow it
/// (`mremap`) and unmap it, then grow its heap by 48 MiB in blocks below
/// the mmap threshold (`brk` on the main thread's heap, `mprotect` and
/// `mmap` on a thread's arena) and give them all back (with trimming on, a
/// thread's arena would now shrink, and open a file). Only the first and
/// last byte of each block is touched: the memory is reserved, hardly used.
/// Says which arena it used and whether every allocation succeeded.
pub fn exercise() -> String {
    const BLOCK: usize = 64 * 1024;
    const BLOCKS: usize = 768;
    let mut blocks = Vec::with_capacity(BLOCKS);
    let mut thread_arena = None;
    let mut ok = true;
    // First, and above both the largest mmap threshold glibc ever sets
    // (32 MiB) and a thread heap's size (64 MiB), so the block is mapped
    // whatever was freed before (not carved from a heap's free top), and
    // its growth is an mremap.
    // SAFETY: malloc, realloc and free of one block, in that order; the
    // realloc's result replaces the pointer only when it is not null.
    unsafe {
        let big = libc::malloc(100 << 20);
        if big.is_null() {
            ok = false;
        } else {
            big.cast::<u8>().write_volatile(1);
            let grown = libc::realloc(big, 200 << 20);
            if grown.is_null() {
                ok = false;
                libc::free(big);
            } else {
                libc::free(grown);
            }
        }
    }
    for _ in 0..BLOCKS {
        // SAFETY: a plain allocation, freed below.
        let p = unsafe { libc::malloc(BLOCK) };
        if p.is_null() {
            ok = false;
            break;
        }
        // SAFETY: live, from glibc's malloc, below the mmap threshold.
        thread_arena.get_or_insert(unsafe { in_thread_arena(p) });
        // SAFETY: the block is BLOCK bytes long; touch its first and last.
        unsafe {
            p.cast::<u8>().write_volatile(1);
            p.cast::<u8>().add(BLOCK - 1).write_volatile(1);
        }
        blocks.push(p);
    }
    // Last in, first out: each free merges into the top of the heap.
    for p in blocks.into_iter().rev() {
        // SAFETY: each block was allocated above and is freed once.
        unsafe { libc::free(p) };
    }
    let arena = match thread_arena {
        Some(true) => "a thread's arena",
        Some(false) => "the main heap",
        None => "no arena",
    };
    format!("selftest: heap grown and given back on {arena}: every allocation succeeded: {ok}")
}
