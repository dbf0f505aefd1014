//! This machine as the tool names it to others: its host name, and
//! whether a process of it still runs. Leases and temporary copies carry
//! both, so a process can tell what a dead one on its own host left.

/// This machine's name, as the kernel knows it (`unknown-host` when it has
/// none usable: names travel space-separated).
pub(crate) fn name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty() && !name.contains(' '))
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Whether a process of this host runs with this id (another user's
/// included).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Ok(()) | Err(rustix::io::Errno::PERM)
    )
}
