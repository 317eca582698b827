//! Processes as `/proc` shows them: what the benchmarks read to measure a broker, and what
//! `brook-bench` reads to stop the processes it started.

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses): the state, the parent's pid, ... (fields 3 onwards of the whole line);
/// `None` when there is no such process.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` has not exited: it exists and is no zombie (exited, not yet reaped).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// The pids whose parent is `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f.get(1) == Some(&parent)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_is_found_alive_then_not_once_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(alive(pid));
        assert!(children(std::process::id()).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(pid));
        assert!(!children(std::process::id()).contains(&pid));
        assert_eq!(stat_fields(u32::MAX), None);
    }
}
