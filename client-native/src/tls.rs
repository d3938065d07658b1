//! `wss://`: rustls with the ring provider, trusting the system's roots and any CA the caller
//! adds ([`crate::ClientOpts::ca_pem`]), e.g. a private CA or a test certificate.

use std::sync::Arc;

use amrpc_core::Error;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The TLS settings of one client: built once, at connect, for every dial.
pub(crate) fn client_config(extra_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system root certificate could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| Error::InvalidArgs(format!("ca_pem: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::InvalidArgs(format!("ca_pem: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::InvalidArgs("ca_pem: no PEM certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
