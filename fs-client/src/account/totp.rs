//! `vault totp enable|disable`: an authenticator app as the second factor.
//!
//! Enabling shows the server's `otpauth://` URI as a QR code in the terminal
//! (and the secret for manual entry), then asks for the app's first code,
//! which activates it. Disabling asks for a current code.

use std::io::Write;

use common::api::TotpCodeRequest;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

use super::with_code;
use crate::api::AccountApi;
use crate::api::authed::SessionClient;
use crate::config::SessionStore;
use crate::error::Error;
use crate::secrets::Prompter;

/// The QR code of `data` in Unicode half blocks, light on dark so it scans
/// from a dark terminal, with the quiet zone scanners need.
pub fn qr_text(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Enrols and activates TOTP.
pub async fn totp_enable<A, S, P, W>(
    client: &SessionClient<'_, A, S>,
    prompter: &mut P,
    out: &mut W,
) -> Result<(), Error>
where
    A: AccountApi,
    S: SessionStore,
    P: Prompter,
    W: Write,
{
    let enrollment = client.totp_enroll().await?;
    if !enrollment
        .otpauth_uri
        .expose()
        .starts_with("otpauth://totp/")
    {
        return Err(Error::Inconsistent(
            "the enrolment URI is not an otpauth://totp/ URI",
        ));
    }
    writeln!(out, "Scan this QR code with your authenticator app:")?;
    writeln!(out)?;
    match qr_text(enrollment.otpauth_uri.expose()) {
        Some(qr) => writeln!(out, "{qr}")?,
        None => writeln!(out, "(the URI is too long for a QR code)")?,
    }
    writeln!(out)?;
    writeln!(
        out,
        "Or enter this secret by hand: {}",
        enrollment.secret.expose()
    )?;
    writeln!(out, "URI: {}", enrollment.otpauth_uri.expose())?;
    out.flush()?;
    with_code(prompter, "Code shown by the app: ", |code| {
        let req = TotpCodeRequest { code: code.into() };
        async move { client.totp_activate(&req).await.map_err(Error::from) }
    })
    .await?;
    writeln!(
        out,
        "Authenticator app enabled: logins now ask for its code (`vault login --email-code` still gets one by e-mail)."
    )?;
    Ok(())
}

/// Turns TOTP off.
pub async fn totp_disable<A, S, P, W>(
    client: &SessionClient<'_, A, S>,
    prompter: &mut P,
    out: &mut W,
) -> Result<(), Error>
where
    A: AccountApi,
    S: SessionStore,
    P: Prompter,
    W: Write,
{
    with_code(
        prompter,
        "Current code from your authenticator app: ",
        |code| {
            let req = TotpCodeRequest { code: code.into() };
            async move { client.totp_disable(&req).await.map_err(Error::from) }
        },
    )
    .await?;
    writeln!(
        out,
        "Authenticator app disabled: logins now ask for an e-mailed code."
    )?;
    Ok(())
}
