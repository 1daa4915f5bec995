//! Standard output that never panics: a closed pipe (`protobase inspect |
//! head -1`) becomes an error that ends the command quietly.

use std::io::Write;

/// Writes `bytes` to stdout and flushes.
pub(crate) fn bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

/// Writes one line to stdout and flushes.
pub(crate) fn line(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Whether `e` (or an error it wraps) is a write to a closed pipe.
pub(crate) fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `println!` that returns an error on a closed pipe instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::line("")?
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}
pub(crate) use outln;

/// A usage error found after parsing (exit code 2, like clap's own).
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A boxed [`Usage`] error.
pub(crate) fn usage(message: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Usage(message.into()))
}
