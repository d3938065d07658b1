//! Signed tokens for the auth hook: `base64url(client_id ":" expires) "." base64url(hmac)`,
//! HMAC-SHA256 over the first part with a key only the server (and whoever issues tokens)
//! holds. A token is bound to one client id and expires. ring does the HMAC and its
//! constant-time check.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;

/// A token for `client_id`, valid until `expires` (seconds since the Unix epoch).
pub(crate) fn mint(key: &hmac::Key, client_id: &str, expires: u64) -> String {
    let payload = B64.encode(format!("{client_id}:{expires}"));
    let tag = hmac::sign(key, payload.as_bytes());
    format!("{payload}.{}", B64.encode(tag.as_ref()))
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Missing.
    Missing,
    /// Not `payload.signature`, or not base64, or not `id:expires`.
    Malformed,
    /// The signature does not match (forged or altered).
    BadSignature,
    /// Issued to another client id.
    OtherClient,
    /// Expired.
    Expired,
}

/// Check `token` for `client_id` at `now` (seconds since the Unix epoch).
pub(crate) fn verify(key: &hmac::Key, client_id: &str, token: Option<&str>, now: u64) -> Result<(), Refused> {
    let token = token.ok_or(Refused::Missing)?;
    let (payload, sig) = token.split_once('.').ok_or(Refused::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| Refused::Malformed)?;
    hmac::verify(key, payload.as_bytes(), &sig).map_err(|_| Refused::BadSignature)?;
    let claims =
        String::from_utf8(B64.decode(payload).map_err(|_| Refused::Malformed)?).map_err(|_| Refused::Malformed)?;
    let (id, expires) = claims.rsplit_once(':').ok_or(Refused::Malformed)?;
    let expires: u64 = expires.parse().map_err(|_| Refused::Malformed)?;
    if id != client_id {
        return Err(Refused::OtherClient);
    }
    if expires <= now {
        return Err(Refused::Expired);
    }
    Ok(())
}
