//! [`ConfigError`]: what is wrong with a node description, naming the file
//! and the key.

use std::fmt;

/// Where a configuration came from: a file path, or a label such as
/// `<string>` or `env PROTOBASE_BACKEND__DIR` for text given in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(pub String);

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&std::path::Path> for Source {
    fn from(p: &std::path::Path) -> Self {
        Source(p.display().to_string())
    }
}

/// An invalid, unreadable or unbuildable node configuration.
///
/// Every variant names the file (or [`Source`]); value errors also name the
/// key as a dotted path (`backend.dir`, `cluster.servers[1].address`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {file}: {source}")]
    Read {
        /// The file.
        file: Source,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say TOML or JSON.
    #[error("{file}: unknown config format (use a .toml or .json file)")]
    UnknownFormat {
        /// The file.
        file: Source,
    },
    /// The text is not valid TOML / JSON / INI.
    #[error("{file}: syntax error: {message}")]
    Syntax {
        /// The file.
        file: Source,
        /// The parser's message (with line and column where known).
        message: String,
    },
    /// A key is unknown, missing or has a bad value.
    #[error("{file}: key `{key}`: {message}")]
    Key {
        /// The file.
        file: Source,
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration is well-formed, but building a component from it
    /// failed (bad value found at build time, unreachable store...).
    #[error("{file}: cannot build {component}: {source}")]
    Build {
        /// The file.
        file: Source,
        /// Which section (`backend`, `transport`, `storage`...).
        component: &'static str,
        /// The underlying error.
        #[source]
        source: crate::Error,
    },
}

impl ConfigError {
    /// The key this error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The file (or source label) this error is about.
    pub fn file(&self) -> &Source {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::UnknownFormat { file }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Key { file, .. }
            | ConfigError::Build { file, .. } => file,
        }
    }

    /// A key error from a `serde_path_to_error` path and the serde message:
    /// an unknown field's name ends the key when the path stops short of it
    /// (inside a `type`-tagged section the path ends at the section).
    pub(crate) fn from_serde(file: &Source, path: &str, message: String) -> Self {
        let mut key = if path == "." {
            String::new()
        } else {
            path.to_string()
        };
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        if let Some(field) = unknown
            && key.rsplit('.').next() != Some(field)
        {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(field);
        }
        if key.is_empty() {
            key.push('.');
        }
        ConfigError::Key {
            file: file.clone(),
            key,
            message,
        }
    }
}
