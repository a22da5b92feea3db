//! Load errors, each with the place in the files it is about.

use std::fmt;
use std::path::PathBuf;

/// One problem in the policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file, relative to the store's directory.
    pub file: PathBuf,
    /// 1-based line (0 when the problem is the file as a whole).
    pub line: u32,
    /// 1-based column (0 when the problem is the file as a whole).
    pub column: u32,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a policy store; a store with any is never loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<PolicyError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "the policy store has {count} error{}:",
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}
