//! A program's arena: one block of bytes, zeroed and 64-byte aligned.
//!
//! The block comes zeroed from the allocator (`calloc`) instead of being written with zeros
//! after allocation: a large block is fresh pages, which the kernel maps as zero when they are
//! first touched, so making a program no longer walks (and faults in) every page of an arena
//! of up to hundreds of MiB; the first run touches what it uses.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::plan::ALIGN;

pub(crate) struct Arena {
    /// The allocation, `len + ALIGN` bytes with alignment 1 (so that the system allocator
    /// takes its `calloc` path, which skips zeroing memory that is fresh from the kernel).
    block: NonNull<u8>,
    /// Where the 64-byte-aligned arena starts in the block (below `ALIGN`).
    offset: usize,
    len: usize,
}

// SAFETY: an `Arena` owns its block alone, as a `Vec<u8>` owns its buffer: nothing else holds
// the pointer, and every access goes through `&self` (reads) or `&mut self` (writes), so moving
// it to another thread or sharing `&Arena` between threads is as sound as for `Vec<u8>`.
unsafe impl Send for Arena {}
// SAFETY: as for `Send`: shared access only reads.
unsafe impl Sync for Arena {}

impl Arena {
    /// `len` zero bytes starting at a multiple of 64, or `None` if they cannot be allocated.
    pub(crate) fn zeroed(len: usize) -> Option<Arena> {
        let layout = Layout::from_size_align(len.checked_add(ALIGN)?, 1).ok()?;
        // SAFETY: the layout's size is at least ALIGN, never zero.
        let block = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        let offset = block.as_ptr().align_offset(ALIGN);
        // `align_offset` on a `u8` pointer is always below the alignment it is asked for.
        assert!(offset < ALIGN, "a byte pointer aligns within {ALIGN} bytes");
        Some(Arena { block, offset, len })
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.len + ALIGN, 1).expect("the layout `zeroed` allocated")
    }

    /// The arena's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The arena's first byte, 64-byte aligned, for reads.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        // SAFETY: `offset < ALIGN`, so the result is inside the block of `len + ALIGN` bytes.
        unsafe { self.block.as_ptr().add(self.offset) }
    }

    /// The arena's first byte, 64-byte aligned, for writes (through `&mut self`: no other
    /// reference to the arena is live while the pointer is used).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as in `as_ptr`.
        unsafe { self.block.as_ptr().add(self.offset) }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the `len` bytes from `as_ptr` are inside the block (`offset + len` is at most
        // its size), initialised (allocated zeroed, then written only as bytes), and borrowed
        // with `&self`, so nothing writes them while the slice lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed with `&mut self`: the only reference to the arena.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `block` was allocated by `alloc_zeroed` with this layout and not freed yet.
        unsafe { alloc::dealloc(self.block.as_ptr(), self.layout()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_and_aligned() {
        for len in [0, 1, 64, 1000, 4 << 20] {
            let mut a = Arena::zeroed(len).expect("allocates");
            assert_eq!(a.as_ptr() as usize % ALIGN, 0);
            assert_eq!(a.len(), len);
            assert!(a.bytes().iter().all(|&b| b == 0));
            a.bytes_mut().fill(7);
            assert!(a.bytes().iter().all(|&b| b == 7));
        }
        assert!(Arena::zeroed(usize::MAX).is_none());
    }
}
