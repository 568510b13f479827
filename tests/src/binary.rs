//! Locating the `redis-server` / `redis-cli` executables.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Name of the environment variable that overrides the location of binary `name`:
/// `redis-server` → `REDIS_SERVER_BIN`, `redis-cli` → `REDIS_CLI_BIN`.
fn override_var(name: &str) -> String {
    let mut var: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    var.push_str("_BIN");
    var
}

fn override_value(name: &str) -> Option<(String, OsString)> {
    let var = override_var(name);
    let value = std::env::var_os(&var).filter(|v| !v.is_empty())?;
    Some((var, value))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        let suffix = std::env::consts::EXE_SUFFIX;
        if !suffix.is_empty() {
            let mut with_suffix = candidate.into_os_string();
            with_suffix.push(suffix);
            let with_suffix = PathBuf::from(with_suffix);
            if is_executable(&with_suffix) {
                return Some(with_suffix);
            }
        }
        None
    })
}

/// Resolves a value that is either a path (contains a separator) or a bare command name.
fn resolve(value: &Path) -> Option<PathBuf> {
    if value.components().count() > 1 || value.is_absolute() {
        is_executable(value).then(|| value.to_path_buf())
    } else {
        search_path(value)
    }
}

/// Finds the executable `name` (e.g. `"redis-server"`, `"redis-cli"`).
///
/// If the override variable is set (`REDIS_SERVER_BIN` for `redis-server`, `REDIS_CLI_BIN`
/// for `redis-cli`; in general the upper-cased name with non-alphanumerics replaced by `_`,
/// plus `_BIN`), its value is used instead: either a path to the executable or a bare
/// command name looked up on `PATH`. Otherwise `name` is looked up on `PATH`.
///
/// Returns `None` when nothing executable is found, for callers that want to fall back.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    match override_value(name) {
        Some((_, value)) => resolve(Path::new(&value)),
        None => search_path(Path::new(name)),
    }
}

/// Like [`find_binary`], but a missing binary is a hard error: tests that need Redis must
/// never be skipped silently.
///
/// # Panics
///
/// Panics with installation instructions (`apt-get install -y redis-server` on
/// Debian/Ubuntu, `brew install redis` on macOS) when the binary cannot be found, or when
/// the override variable points to something that is not an executable.
pub fn require_binary(name: &str) -> PathBuf {
    if let Some(path) = find_binary(name) {
        return path;
    }
    let var = override_var(name);
    let location = match override_value(name) {
        Some((_, value)) => format!(
            "{var}={} does not name an executable file",
            Path::new(&value).display()
        ),
        None => format!("`{name}` was not found on PATH (and {var} is not set)"),
    };
    panic!(
        "\n\
         runonce tests need a real Redis installation, but {location}.\n\
         These tests are never skipped. Install Redis and re-run:\n\
         \x20 Debian/Ubuntu:     sudo apt-get install -y redis-server   (also provides redis-cli)\n\
         \x20 macOS (Homebrew):  brew install redis\n\
         \x20 Fedora/RHEL:       sudo dnf install -y redis\n\
         or point {var} at the `{name}` executable.\n"
    );
}

#[cfg(test)]
mod tests {
    use super::override_var;

    #[test]
    fn override_variable_names() {
        assert_eq!(override_var("redis-server"), "REDIS_SERVER_BIN");
        assert_eq!(override_var("redis-cli"), "REDIS_CLI_BIN");
    }
}
