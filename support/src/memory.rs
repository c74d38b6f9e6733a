//! How much linear memory this isolate's wasm instance holds. Wasm memory only grows, and
//! the allocator reuses freed blocks, so once warm it stays flat unless Rust code leaks: a
//! far sharper leak signal than the process's resident memory, which the runtime's own heaps
//! move by kilobytes per request.

/// The wasm instance's linear memory, in bytes (64 KiB pages).
pub fn wasm_memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}
