//! Helper programs that report on one line of `key=value` words (`ioth-fault-holder`'s modes):
//! run one to its end and read its fields.

use std::process::{Command, Stdio};

/// What a helper program printed on stdout, once it has exited successfully.
pub struct Report {
    text: String,
}

impl Report {
    /// Runs `bin` with `args` and the extra environment `envs` (stderr passed through), checks
    /// that it succeeded, and prints its report for the test's log.
    pub fn run(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Report {
        let out = Command::new(bin)
            .args(args)
            .envs(envs.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{bin}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{args:?}: {text}");
        assert!(
            out.status.success(),
            "{bin} {args:?}: {:?}\n{text}",
            out.status
        );
        Report { text }
    }

    /// The value of `key` (the text after `key=` up to white space).
    pub fn field(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.text
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in {}", self.text))
    }

    /// [`Report::field`] as a number.
    pub fn num(&self, key: &str) -> usize {
        let v = self.field(key);
        v.parse()
            .unwrap_or_else(|_| panic!("{key}={v} is no number in {}", self.text))
    }

    /// The whole report, for assertion messages.
    pub fn text(&self) -> &str {
        &self.text
    }
}
