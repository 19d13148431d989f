//! What each `vault` command does: resolve the server and the session, build
//! the HTTP client and the prompter, and call the account flow or print the
//! server's answer. The handlers below [`run`] are generic over the API and
//! the store so they are tested against the fake.

use std::io::{self, Write};

use common::crypto::keywrap::canonical_account;

use super::keep_key::{Remembering, keep_vault_key};
use super::render::{clean, table, utc};
use super::{Cli, Command, SessionsCommand, TotpCommand};
use crate::account::{self, LoginOptions};
use crate::api::authed::SessionClient;
use crate::api::http::{HttpApi, HttpOptions};
use crate::api::{AccountApi, AuditQuery};
use crate::config::{FileStore, MemoryStore, Session, SessionStore, config_dir};
use crate::error::Error;
use crate::mount::{command as mount, keyring};
use crate::secrets::{NEW_PASSWORD_ENV, PASSWORD_ENV, Prompter, Secrets, given_password};
use crate::server_url::ServerUrl;

/// The server for a command that starts something new (register, login):
/// `--server`, else `VAULT_SERVER` (both in `flag`), else the saved session's.
pub fn server_for_new(flag: Option<&str>, saved: Option<&Session>) -> Result<ServerUrl, Error> {
    match (flag, saved) {
        (Some(url), _) => Ok(ServerUrl::parse(url)?),
        (None, Some(s)) => Ok(ServerUrl::parse(&s.server)?),
        (None, None) => Err(Error::NoServer),
    }
}

/// The saved session for a command that needs one, checked against an
/// explicitly named server.
pub fn session_for(
    flag: Option<&str>,
    saved: Option<Session>,
) -> Result<(ServerUrl, Session), Error> {
    let session = saved.ok_or(Error::NotLoggedIn)?;
    let server = ServerUrl::parse(&session.server)?;
    if let Some(url) = flag {
        let given = ServerUrl::parse(url)?;
        if given != server {
            return Err(Error::OtherServer {
                saved: server.to_string(),
                given: given.to_string(),
            });
        }
    }
    Ok((server, session))
}

/// Runs the parsed command line.
pub async fn run(cli: &Cli) -> Result<(), Error> {
    // The daemon gets everything from `vault mount` over its stdin.
    if let Command::MountDaemon = cli.command {
        return mount::daemon().await;
    }
    let store = FileStore::new(config_dir()?);
    let flag = cli.server.as_deref();
    let http = |server: ServerUrl| {
        HttpApi::new(
            server,
            &HttpOptions {
                ca_file: cli.ca_file.clone(),
                ..HttpOptions::default()
            },
        )
    };
    // For the commands that need a saved session.
    let connect = || -> Result<(HttpApi, Session), Error> {
        let (server, session) = session_for(flag, store.load()?)?;
        Ok((http(server)?, session))
    };
    let mut out = io::stdout();
    match &cli.command {
        Command::Register(args) => {
            let server = server_for_new(flag, store.load()?.as_ref())?;
            let password = given_password(args.password.password_file.as_deref(), PASSWORD_ENV)?;
            let mut secrets = Secrets::from_stdin(password, None);
            account::register(&http(server)?, &mut secrets, &mut out, &args.email).await
        }
        Command::VerifyEmail(args) => {
            let server = server_for_new(flag, store.load()?.as_ref())?;
            let mut secrets = Secrets::from_stdin(None, None);
            account::verify_email(&http(server)?, &mut secrets, &mut out, &args.email).await
        }
        Command::Login(args) => {
            let saved = store.load()?;
            let server = server_for_new(flag, saved.as_ref())?;
            let password = given_password(args.password.password_file.as_deref(), PASSWORD_ENV)?;
            let mut secrets = Secrets::from_stdin(password, None);
            let email = login_email(args.email.as_deref(), saved.as_ref(), &server, &mut secrets)?;
            let options = LoginOptions {
                email_code: args.email_code,
                device: account::device_label(),
            };
            let api = http(server.clone())?;
            // Keep the password only if the keyring can take the key.
            let keep = args.keep_key > 0 && keyring::available();
            let mut prompter = Remembering::new(&mut secrets, keep);
            let session = account::login(
                &api,
                &store,
                &mut prompter,
                &mut out,
                &server,
                &email,
                &options,
            )
            .await?;
            keep_vault_key(&session, prompter.take_password(), args.keep_key).await;
            if let Some(old) = saved
                .filter(|old| old.server == session.server && old.session_id != session.session_id)
            {
                end_replaced_session(&api, old).await;
            }
            Ok(())
        }
        Command::Logout(args) => {
            let (api, session) = connect()?;
            keyring::revoke(&session.server, &session.account_id);
            let client = SessionClient::new(&api, &store, session);
            logout(&client, &store, args.all, &mut out).await
        }
        Command::Status(args) if args.mounts => {
            write_mounts(&mount::status_lines().await, &mut out)?;
            Ok(())
        }
        Command::Status(_) => {
            let (api, session) = connect()?;
            let mounts = mount::status_lines().await;
            status(
                &SessionClient::new(&api, &store, session),
                &mounts,
                &mut out,
            )
            .await
        }
        Command::Passwd(args) => {
            let current = given_password(args.password.password_file.as_deref(), PASSWORD_ENV)?;
            let new = given_password(args.new_password_file.as_deref(), NEW_PASSWORD_ENV)?;
            let mut secrets = Secrets::from_stdin(current, new);
            let (api, session) = connect()?;
            let client = SessionClient::new(&api, &store, session);
            account::change_password(&client, &mut secrets, &mut out).await
        }
        Command::Sessions(args) => {
            let (api, session) = connect()?;
            let client = SessionClient::new(&api, &store, session);
            match &args.action {
                None => sessions(&client, &mut out).await,
                Some(SessionsCommand::Revoke { id }) => revoke(&client, &store, id, &mut out).await,
            }
        }
        Command::Totp(action) => {
            let mut secrets = Secrets::from_stdin(None, None);
            let (api, session) = connect()?;
            let client = SessionClient::new(&api, &store, session);
            match action {
                TotpCommand::Enable => account::totp_enable(&client, &mut secrets, &mut out).await,
                TotpCommand::Disable => {
                    account::totp_disable(&client, &mut secrets, &mut out).await
                }
            }
        }
        Command::Audit(args) => {
            let (api, session) = connect()?;
            let query = AuditQuery {
                before: args.before,
                limit: Some(args.limit),
            };
            audit(&SessionClient::new(&api, &store, session), query, &mut out).await
        }
        Command::Mount(args) => mount::mount(cli, args, &mut out).await,
        Command::Unmount(args) => mount::unmount(&args.dir, &mut out).await,
        Command::MountDaemon => mount::daemon().await,
    }
}

/// Best effort: ends on the server the session a new login replaced, so it
/// does not linger in `vault sessions`. It is no longer in the session file,
/// so it refreshes from memory.
async fn end_replaced_session<A: AccountApi>(api: &A, old: Session) {
    let memory = MemoryStore::with(old);
    let client = match SessionClient::from_store(api, &memory) {
        Ok(c) => c,
        Err(_) => return,
    };
    if let Err(e) = client.logout().await {
        tracing::debug!(error = %e, "could not end the replaced session");
    }
}

/// The address to log in with: `--email`, else the saved session's (for the
/// same server), else asked (on a terminal only).
pub fn login_email<P: Prompter>(
    flag: Option<&str>,
    saved: Option<&Session>,
    server: &ServerUrl,
    prompter: &mut P,
) -> Result<String, Error> {
    if let Some(email) = flag {
        return Ok(email.to_owned());
    }
    if let Some(s) = saved.filter(|s| s.server == server.as_str()) {
        return Ok(s.email.clone());
    }
    let email = prompter.text("E-mail address: ", "give the account with --email")?;
    if email.is_empty() {
        return Err(Error::Usage("no e-mail address given".into()));
    }
    Ok(email)
}

/// `vault logout [--all]`: the local session goes whatever the server says.
pub async fn logout<A: AccountApi, S: SessionStore, W: Write>(
    client: &SessionClient<'_, A, S>,
    store: &S,
    all: bool,
    out: &mut W,
) -> Result<(), Error> {
    let told = if all {
        client.revoke_all_sessions().await
    } else {
        client.logout().await
    };
    store.remove()?;
    match told {
        // A session the server no longer honours is as logged out as can be.
        Ok(()) | Err(crate::api::ApiError::NotLoggedIn) => {
            let what = if all { "every session" } else { "this session" };
            writeln!(out, "Logged out of {what}.")?;
            Ok(())
        }
        Err(e) => Err(Error::LocalLogoutOnly(Box::new(e.into()))),
    }
}

/// `vault status`; `mounts` are the lines of the live mounts.
pub async fn status<A: AccountApi, S: SessionStore, W: Write>(
    client: &SessionClient<'_, A, S>,
    mounts: &[String],
    out: &mut W,
) -> Result<(), Error> {
    let account = client.account().await?;
    let session = client.session().await;
    if canonical_account(&account.email) != canonical_account(&session.email) {
        return Err(Error::Inconsistent(
            "the session belongs to another account",
        ));
    }
    let second = if account.totp_enabled {
        "authenticator app (TOTP)"
    } else {
        "e-mailed code"
    };
    writeln!(out, "Server:         {}", session.server)?;
    writeln!(out, "Account:        {}", clean(&account.email))?;
    writeln!(out, "Second factor:  {second}")?;
    writeln!(out, "Session:        {}", clean(&session.session_id))?;
    write_mounts(mounts, out)?;
    Ok(())
}

/// The `Mounts:` part of `vault status` (all of `vault status --mounts`).
pub fn write_mounts<W: Write>(mounts: &[String], out: &mut W) -> io::Result<()> {
    if mounts.is_empty() {
        writeln!(out, "Mounts:         none")?;
    } else {
        writeln!(out, "Mounts:")?;
        for line in mounts {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// `vault sessions`.
pub async fn sessions<A: AccountApi, S: SessionStore, W: Write>(
    client: &SessionClient<'_, A, S>,
    out: &mut W,
) -> Result<(), Error> {
    let list = client.sessions().await?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                format!("{}{}", s.id, if s.current { " *" } else { "" }),
                s.device.clone().unwrap_or_else(|| "-".into()),
                s.ip.clone().unwrap_or_else(|| "-".into()),
                utc(s.created_at),
                utc(s.last_used_at),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &["ID", "DEVICE", "IP", "CREATED (UTC)", "LAST USED (UTC)"],
            &rows
        )
    )?;
    writeln!(out, "* this session")?;
    Ok(())
}

/// `vault sessions revoke ID`.
pub async fn revoke<A: AccountApi, S: SessionStore, W: Write>(
    client: &SessionClient<'_, A, S>,
    store: &S,
    id: &str,
    out: &mut W,
) -> Result<(), Error> {
    client
        .revoke_session(id)
        .await
        .map_err(|e| match Error::from(e) {
            Error::NotFound(_) => Error::NotFound(format!("no session with ID {}", clean(id))),
            other => other,
        })?;
    if client.session().await.session_id == id {
        store.remove()?;
        writeln!(
            out,
            "Revoked session {id}: that was this session, so you are logged out."
        )?;
    } else {
        writeln!(out, "Revoked session {}.", clean(id))?;
    }
    Ok(())
}

/// `vault audit`.
pub async fn audit<A: AccountApi, S: SessionStore, W: Write>(
    client: &SessionClient<'_, A, S>,
    query: AuditQuery,
    out: &mut W,
) -> Result<(), Error> {
    let events = client.audit(query).await?;
    if events.is_empty() {
        writeln!(out, "No events.")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                utc(e.at),
                e.event.clone(),
                e.outcome.clone(),
                e.ip.clone().unwrap_or_else(|| "-".into()),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &["ID", "TIME (UTC)", "EVENT", "OUTCOME", "IP", "DETAIL"],
            &rows
        )
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;
