//! What this process may allocate, so that a run too large for the machine is refused with
//! advice before it starts instead of aborting in the allocator (or swapping the host to a
//! halt) half-way through.

/// The memory a simulation may use, bytes: the host's `MemAvailable`, lowered to the
/// address-space limit (`ulimit -v`) when one is set. `None` when neither is known.
pub fn memory_budget() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit};
    let available = tierd_linux::mem_available_bytes(&tierd_linux::SysRoot::default());
    let address_space = getrlimit(Resource::RLIMIT_AS)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|s| *s != nix::sys::resource::RLIM_INFINITY);
    match (available, address_space) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_linux_host_has_a_budget() {
        let budget = super::memory_budget().expect("MemAvailable is in /proc/meminfo");
        assert!(budget > 1 << 20, "{budget}");
    }
}
