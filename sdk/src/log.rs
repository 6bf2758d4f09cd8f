//! Logs: lines on the function's stderr, which the node files under the function's name.

use std::fmt::Arguments;
use std::io::Write as _;

/// How much a log line matters.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one line: `LEVEL message`. Multi-line messages stay one entry (newlines escaped).
#[doc(hidden)]
pub fn emit(level: Level, message: Arguments<'_>) {
    let level = match level {
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    };
    let line = format!("{level} {message}").replace('\n', "\\n");
    let mut stderr = std::io::stderr().lock();
    // A log line that cannot be written is not worth failing a request over.
    let _ = writeln!(stderr, "{line}");
}

/// Logs at info level, `format!`-style.
///
/// ```
/// edge::info!("cache warmed with {} entries", 3);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::__private::log($crate::__private::Level::Info, format_args!($($arg)*)) };
}

/// Logs at debug level, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::__private::log($crate::__private::Level::Debug, format_args!($($arg)*)) };
}

/// Logs at warn level, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::__private::log($crate::__private::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at error level, `format!`-style.
///
/// ```
/// edge::error!("origin answered {}", 503);
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::__private::log($crate::__private::Level::Error, format_args!($($arg)*)) };
}
