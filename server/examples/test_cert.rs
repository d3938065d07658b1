//! Write a self-signed test certificate for `localhost` and `127.0.0.1` (rcgen, made fresh on
//! every run, never committed): `DIR/cert.pem`, `DIR/key.pem`, and `DIR/spki.txt` (the base64
//! SHA-256 of its public key, for Chromium's `--ignore-certificate-errors-spki-list`). The Node
//! and browser TLS tests use it (scripts/web/setup.sh); `amrpc serve --tls-cert DIR/cert.pem
//! --tls-key DIR/key.pem` serves it.
//!
//!     cargo run -p amrpc-server --example test_cert -- DIR

use std::path::PathBuf;

use rcgen::PublicKeyData;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: test_cert DIR")?);
    std::fs::create_dir_all(&dir)?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), signing_key.serialize_pem())?;
    // SHA-256 of the DER SubjectPublicKeyInfo, base64: what Chromium pins
    let spki = signing_key.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    use base64::Engine;
    std::fs::write(
        dir.join("spki.txt"),
        base64::engine::general_purpose::STANDARD.encode(digest),
    )?;
    println!("{}", dir.display());
    Ok(())
}
