//! Commands built at their final size. `redis::cmd` starts empty and grows its buffers as
//! arguments come (three or four allocations for an `HINCRBY`); the attempt-log writer builds
//! four commands per delivery of a fan-out, so those are made with room for every argument
//! (BENCHMARKS.md, "Issue 16, ninth slice").

/// `name` followed by arguments whose encoded sizes sum to at most `bytes`, `args` of them.
/// Integers count as up to 20 bytes.
pub(crate) fn command(name: &str, args: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(args + 1, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// Room an integer argument may take.
pub(crate) const INT: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sized_command_encodes_as_the_usual_one() {
        let mut sized = command("HINCRBY", 3, 12 + 7 + INT);
        sized.arg("wh:stats:e:1").arg("success").arg(3u64);
        let mut usual = redis::cmd("HINCRBY");
        usual.arg("wh:stats:e:1").arg("success").arg(3u64);
        assert_eq!(sized.get_packed_command(), usual.get_packed_command());
    }
}
