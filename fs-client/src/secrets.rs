//! Asking for passwords and one-time codes.
//!
//! On a terminal, passwords are read without echo (rpassword, from the tty)
//! and a new password is asked twice; codes are read as typed lines. For
//! scripts, the password can come from `VAULT_PASSWORD` or `--password-file`
//! (and `vault passwd`'s new one from `VAULT_NEW_PASSWORD` or
//! `--new-password-file`). When standard input is not a terminal, it is read
//! as lines: first the password (unless given otherwise), then each code in
//! the order asked, and nothing else is asked: no confirmation, no second
//! entry, no retry after a wrong code.
//!
//! Every password is held in [`Zeroizing`] buffers and never logged.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The shortest password accepted for a new account or a password change.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Environment variable holding the password for scripts.
pub const PASSWORD_ENV: &str = "VAULT_PASSWORD";
/// Environment variable holding `vault passwd`'s new password for scripts.
pub const NEW_PASSWORD_ENV: &str = "VAULT_NEW_PASSWORD";

/// A password in memory that is wiped when dropped.
pub type Password = Zeroizing<String>;

/// Why a secret could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Standard input ended before the answer.
    #[error("standard input ended before the {0} was given")]
    EndOfInput(&'static str),
    /// The two entries of a new password differ.
    #[error("the passwords do not match")]
    Mismatch,
    /// A new password is too short.
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// An empty password.
    #[error("the password is empty")]
    Empty,
    /// A code is not 6 digits.
    #[error("a code is 6 digits")]
    BadCode,
    /// The password file could not be read.
    #[error("cannot read the password file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Something other than UTF-8 text was given.
    #[error("the {0} is not valid UTF-8 text")]
    NotText(&'static str),
    /// Reading the terminal or standard input failed.
    #[error("cannot read the {what}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A question that only a person at a terminal may be asked.
    #[error("{0} (standard input is not a terminal)")]
    NotInteractive(&'static str),
}

/// Which password is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    /// The account's password, to log in.
    Login,
    /// The current password, before changing it.
    Current,
    /// A password for a new account (asked twice on a terminal).
    Choose,
    /// The new password in `vault passwd` (asked twice on a terminal).
    ChooseNew,
}

impl PasswordKind {
    fn prompt(self) -> &'static str {
        match self {
            Self::Login => "Password: ",
            Self::Current => "Current password: ",
            Self::Choose => "Choose a password: ",
            Self::ChooseNew => "New password: ",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Login | Self::Choose => "password",
            Self::Current => "current password",
            Self::ChooseNew => "new password",
        }
    }

    fn is_new(self) -> bool {
        matches!(self, Self::Choose | Self::ChooseNew)
    }
}

/// The questions the account flows ask. A trait so flows can be tested with
/// scripted answers.
pub trait Prompter {
    /// A password. New ones are checked for length and, from a person,
    /// confirmed.
    fn password(&mut self, kind: PasswordKind) -> Result<Password, SecretError>;
    /// A 6-digit one-time code; `prompt` says where it comes from.
    fn code(&mut self, prompt: &str) -> Result<String, SecretError>;
    /// Free text such as an e-mail address; only a person is asked.
    fn text(&mut self, prompt: &str, missing: &'static str) -> Result<String, SecretError>;
    /// True when a person answers (so a wrong code may be asked again).
    fn interactive(&self) -> bool;
}

/// Where answers come from.
enum Input {
    /// A person at a terminal.
    Terminal,
    /// Lines of a non-terminal standard input (or a test script).
    Lines(Box<dyn BufRead + Send>),
}

/// The [`Prompter`] of the `vault` command.
pub struct Secrets {
    input: Input,
    password: Option<Password>,
    new_password: Option<Password>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("interactive", &matches!(self.input, Input::Terminal))
            .field("password_given", &self.password.is_some())
            .field("new_password_given", &self.new_password.is_some())
            .finish()
    }
}

/// Reads a password file: its text without one trailing line break.
pub fn read_password_file(path: &Path) -> Result<Password, SecretError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| SecretError::File {
        path: path.to_path_buf(),
        source,
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::NotText("password file"))?;
    Ok(Zeroizing::new(strip_line_end(text).to_owned()))
}

fn strip_line_end(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// A password from a file, else from an environment variable (ignored when
/// empty).
pub fn given_password(file: Option<&Path>, env_var: &str) -> Result<Option<Password>, SecretError> {
    if let Some(path) = file {
        return read_password_file(path).map(Some);
    }
    match std::env::var_os(env_var) {
        Some(v) if !v.is_empty() => v
            .into_string()
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|_| SecretError::NotText("password in the environment")),
        _ => Ok(None),
    }
}

/// Checks a new password (the server cannot: it never sees it).
pub fn check_new_password(password: &str) -> Result<(), SecretError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(SecretError::TooShort);
    }
    Ok(())
}

/// Normalises a typed code: spaces and dashes dropped, 6 ASCII digits.
pub fn normalise_code(raw: &str) -> Result<String, SecretError> {
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(SecretError::BadCode)
    }
}

impl Secrets {
    /// Answers from the terminal when standard input is one, else from
    /// standard input's lines.
    pub fn from_stdin(password: Option<Password>, new_password: Option<Password>) -> Self {
        let input = if io::stdin().is_terminal() {
            Input::Terminal
        } else {
            Input::Lines(Box::new(io::BufReader::new(io::stdin())))
        };
        Self {
            input,
            password,
            new_password,
        }
    }

    /// Answers from `lines` (a script), never from a person.
    pub fn from_lines(
        lines: impl BufRead + Send + 'static,
        password: Option<Password>,
        new_password: Option<Password>,
    ) -> Self {
        Self {
            input: Input::Lines(Box::new(lines)),
            password,
            new_password,
        }
    }

    fn read_line(reader: &mut dyn BufRead, what: &'static str) -> Result<Password, SecretError> {
        let mut raw = Zeroizing::new(Vec::new());
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|source| SecretError::Io { what, source })?;
        if n == 0 {
            return Err(SecretError::EndOfInput(what));
        }
        let text = std::str::from_utf8(&raw).map_err(|_| SecretError::NotText(what))?;
        Ok(Zeroizing::new(strip_line_end(text).to_owned()))
    }

    fn prompt_hidden(prompt: &str, what: &'static str) -> Result<Password, SecretError> {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|source| SecretError::Io { what, source })
    }

    fn prompt_visible(prompt: &str, what: &'static str) -> Result<String, SecretError> {
        let mut err = io::stderr().lock();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        let mut line = String::new();
        let n = io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|source| SecretError::Io { what, source })?;
        if n == 0 {
            return Err(SecretError::EndOfInput(what));
        }
        Ok(strip_line_end(&line).trim().to_owned())
    }
}

impl Prompter for Secrets {
    fn password(&mut self, kind: PasswordKind) -> Result<Password, SecretError> {
        let given = match kind {
            PasswordKind::ChooseNew => self.new_password.take(),
            _ => self.password.take(),
        };
        let password = match (given, &mut self.input) {
            (Some(p), _) => p,
            (None, Input::Lines(reader)) => Self::read_line(reader.as_mut(), kind.what())?,
            (None, Input::Terminal) => {
                let first = Self::prompt_hidden(kind.prompt(), kind.what())?;
                if kind.is_new() {
                    check_new_password(&first)?;
                    let again = Self::prompt_hidden("Repeat the password: ", kind.what())?;
                    if *again != *first {
                        return Err(SecretError::Mismatch);
                    }
                }
                first
            }
        };
        if password.is_empty() {
            return Err(SecretError::Empty);
        }
        if kind.is_new() {
            check_new_password(&password)?;
        }
        Ok(password)
    }

    fn code(&mut self, prompt: &str) -> Result<String, SecretError> {
        let raw = match &mut self.input {
            Input::Lines(reader) => Self::read_line(reader.as_mut(), "code")?.to_string(),
            Input::Terminal => Self::prompt_visible(prompt, "code")?,
        };
        normalise_code(&raw)
    }

    fn text(&mut self, prompt: &str, missing: &'static str) -> Result<String, SecretError> {
        match self.input {
            Input::Lines(_) => Err(SecretError::NotInteractive(missing)),
            Input::Terminal => Self::prompt_visible(prompt, "answer"),
        }
    }

    fn interactive(&self) -> bool {
        matches!(self.input, Input::Terminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn script(text: &str) -> Secrets {
        Secrets::from_lines(Cursor::new(text.as_bytes().to_vec()), None, None)
    }

    #[test]
    fn lines_give_the_password_then_each_code_in_order() {
        let mut s = script("correct horse battery\r\n123456\n 654 321 \n");
        assert!(!s.interactive());
        assert_eq!(
            &*s.password(PasswordKind::Login).unwrap(),
            "correct horse battery"
        );
        assert_eq!(s.code("Code: ").unwrap(), "123456");
        assert_eq!(s.code("Code: ").unwrap(), "654321");
        assert!(matches!(
            s.code("Code: "),
            Err(SecretError::EndOfInput("code"))
        ));
    }

    #[test]
    fn a_password_given_otherwise_is_not_read_from_stdin() {
        let mut s = Secrets::from_lines(
            Cursor::new(b"111111\n".to_vec()),
            Some(Zeroizing::new("from env or file".into())),
            None,
        );
        assert_eq!(
            &*s.password(PasswordKind::Login).unwrap(),
            "from env or file"
        );
        assert_eq!(s.code("Code: ").unwrap(), "111111");
    }

    #[test]
    fn passwd_reads_current_then_new_and_never_asks_for_confirmation() {
        let mut s = script("old password\nnew password!\n");
        assert_eq!(&*s.password(PasswordKind::Current).unwrap(), "old password");
        assert_eq!(
            &*s.password(PasswordKind::ChooseNew).unwrap(),
            "new password!"
        );
        let mut s = Secrets::from_lines(
            Cursor::new(Vec::new()),
            Some(Zeroizing::new("old password".into())),
            Some(Zeroizing::new("new password!".into())),
        );
        assert_eq!(&*s.password(PasswordKind::Current).unwrap(), "old password");
        assert_eq!(
            &*s.password(PasswordKind::ChooseNew).unwrap(),
            "new password!"
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            script("").password(PasswordKind::Login),
            Err(SecretError::EndOfInput("password"))
        ));
        assert!(matches!(
            script("\n").password(PasswordKind::Login),
            Err(SecretError::Empty)
        ));
        assert!(matches!(
            script("short\n").password(PasswordKind::Choose),
            Err(SecretError::TooShort)
        ));
        assert!(matches!(
            script("12345\n").code("Code: "),
            Err(SecretError::BadCode)
        ));
        assert!(matches!(
            script("12345a\n").code("Code: "),
            Err(SecretError::BadCode)
        ));
        assert!(matches!(
            script("a@b\n").text("E-mail: ", "give --email"),
            Err(SecretError::NotInteractive("give --email"))
        ));
        let mut s = Secrets::from_lines(Cursor::new(b"\xff\xfe\n".to_vec()), None, None);
        assert!(matches!(
            s.password(PasswordKind::Login),
            Err(SecretError::NotText(_))
        ));
    }

    #[test]
    fn password_file_loses_only_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, " spaced pass \n").unwrap();
        assert_eq!(&*read_password_file(&path).unwrap(), " spaced pass ");
        assert!(matches!(
            read_password_file(&dir.path().join("missing")),
            Err(SecretError::File { .. })
        ));
        assert_eq!(
            &*given_password(Some(&path), "VAULT_TEST_UNSET_VARIABLE")
                .unwrap()
                .unwrap(),
            " spaced pass "
        );
        assert!(
            given_password(None, "VAULT_TEST_UNSET_VARIABLE")
                .unwrap()
                .is_none()
        );
    }
}
