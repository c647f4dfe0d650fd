//! The one pixel allocation of a batch.
//!
//! A batch's pixels are tens to hundreds of MiB of fresh memory, and the
//! kernel maps it in on first touch: with 4 KiB pages that is one fault per
//! 4 KiB, a cost comparable to decoding itself. Asking for transparent huge
//! pages (where the system allows them) cuts the faults by 512x.

/// A zeroed buffer of `len` bytes, backed by huge pages when possible.
pub fn pixel_buffer(len: usize) -> Vec<u8> {
    // Large calloc-style allocations come straight from the kernel as
    // untouched zero pages, so advising before the first write still counts.
    let buffer = vec![0u8; len];
    advise_huge_pages(&buffer);
    buffer
}

/// Asks the kernel to back the whole 2 MiB pages inside `buffer` with huge
/// pages (best before its first write; ignored where unsupported).
#[cfg(target_os = "linux")]
pub fn advise_huge_pages<T>(buffer: &[T]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(buffer);
    if bytes < 2 * HUGE {
        return;
    }
    let start = buffer.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: the range lies inside `buffer`; MADV_HUGEPAGE only changes
        // how the kernel backs it, never its contents. Failure is harmless.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn advise_huge_pages<T>(_buffer: &[T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_whatever_their_size() {
        for len in [0, 10, 5 << 20] {
            let b = pixel_buffer(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0));
        }
    }
}
