//! Cluster CA, node certificates and join tokens (rcgen + rustls, ring provider).
//!
//! Files under `<data-dir>/tls/`: `ca.crt`, `node.crt`, `node.key` (and `ca.key` on the founding
//! node; the CA key is also replicated in the cluster record so any leader can sign joins).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Every node certificate carries this DNS name; peers dial with it as the TLS server name.
pub const NODE_SAN: &str = "aether-node";

/// TLS errors. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read '{path}': {source}; the data dir's tls/ folder is incomplete: restore it or start from an empty data dir"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write '{path}': {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("bad certificate or key in '{path}': {message}")]
    Parse { path: String, message: String },
    #[error("certificate error: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("bad join token: {0}")]
    Token(String),
}

/// When the (first) certificate in the PEM file `path` stops being valid, in seconds since the
/// Unix epoch (`aether doctor` warns ahead of it).
pub fn cert_not_after(path: &Path) -> Result<i64, TlsError> {
    Ok(cert_validity(path)?.1)
}

/// The validity of the (first) certificate in the PEM file `path`: (not_before, not_after),
/// Unix seconds.
pub fn cert_validity(path: &Path) -> Result<(i64, i64), TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let parse = |message: String| TlsError::Parse {
        path: path.display().to_string(),
        message,
    };
    let der = CertificateDer::from_pem_slice(&pem).map_err(|e| parse(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| parse(e.to_string()))?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Node certificates start this long before they are signed (clock skew between nodes).
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Whether this node's certificate, valid from `not_before` to `not_after`, is to be renewed at
/// `now` (all Unix seconds) under the lifetime `ttl_secs`: once less than a third of its
/// lifetime is left (or it has expired), or when it outlives `ttl_secs` from now (signed
/// under a longer lifetime, or before certificates had one).
pub fn renew_due(now: i64, not_before: i64, not_after: i64, ttl_secs: i64) -> bool {
    let issued = not_before.saturating_add(CLOCK_SKEW_SECS);
    let life = i128::from(not_after) - i128::from(issued);
    let left = i128::from(not_after) - i128::from(now);
    life <= 0 || 3 * left < life || left > i128::from(ttl_secs) + i128::from(CLOCK_SKEW_SECS)
}

/// The ring provider, used by rustls and quinn alike.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of DER bytes, as lower-case hex.
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A freshly created cluster CA, PEM encoded.
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Create a new cluster CA.
pub fn create_ca(cluster_id: &str) -> Result<CaPem, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("aether cluster CA {cluster_id}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The validity of a certificate signed now (Unix seconds `now_secs`) for `ttl_secs`: from a
/// minute before `now_secs` (clock skew) until `now_secs + ttl_secs`.
fn validity(
    now_secs: i64,
    ttl_secs: i64,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), TlsError> {
    let time = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TlsError::Parse {
            path: "node certificate".into(),
            message: format!("bad validity: {e}"),
        })
    };
    Ok((
        time(now_secs - 60)?,
        time(now_secs.saturating_add(ttl_secs))?,
    ))
}

/// Params of a node certificate valid from `now_secs` for `ttl_secs`. Whatever a CSR asks
/// for, the CA signs these.
fn node_params(name: &str, now_secs: i64, ttl_secs: i64) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(vec![NODE_SAN.to_string()])?;
    (params.not_before, params.not_after) = validity(now_secs, ttl_secs)?;
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params
        .subject_alt_names
        .push(SanType::DnsName(format!("{name}.{NODE_SAN}").try_into()?));
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// A new key and a CSR for it (the joining side).
pub fn new_csr(name: &str) -> Result<(KeyPair, String), TlsError> {
    let key = KeyPair::generate()?;
    // Only the key matters to the signer, which applies `node_params` itself.
    let mut params = CertificateParams::new(vec![NODE_SAN.to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.pem()?))
}

/// Sign a CSR with the CA (the leader's side). The CSR's own parameters are ignored except for
/// its public key: the certificate is always a plain node certificate for `name`, valid from
/// `now_secs` (Unix seconds) for `ttl_secs`.
pub fn sign_csr(
    ca: &CaPem,
    csr_pem: &str,
    name: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> Result<String, TlsError> {
    let mut csr =
        CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| TlsError::Parse {
            path: "join request".into(),
            message: format!("bad CSR: {e}"),
        })?;
    csr.params = node_params(name, now_secs, ttl_secs)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    Ok(csr.signed_by(&issuer)?.pem())
}

/// Sign a certificate, valid from `now_secs` (Unix seconds) for `ttl_secs`, for a node whose
/// key we make here (the founding node, and every node renewing its own): (cert, key) PEM.
pub fn issue_node_cert(
    ca: &CaPem,
    name: &str,
    now_secs: i64,
    ttl_secs: i64,
) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let cert = node_params(name, now_secs, ttl_secs)?.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Every operator certificate carries the DNS name `NAME.ROLE.aether-operator` (and only that):
/// its name and role, read back by [`cert_kind`]. A node certificate never carries this suffix.
pub const OPERATOR_SAN: &str = "aether-operator";

/// What a certificate signed by the cluster CA says its holder is. Decided from its names
/// alone (the signature and validity are checked by the TLS handshake before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertKind {
    /// A member: carries [`NODE_SAN`] (and `NAME.aether-node`).
    Node { name: String },
    /// A remote operator: carries `NAME.ROLE.aether-operator` and not [`NODE_SAN`].
    Operator {
        name: String,
        role: crate::domain::Role,
    },
    /// Neither, both, or unreadable: accepted as nothing.
    Unknown,
}

/// The kind of the DER certificate `der` (see [`CertKind`]). Pure.
pub fn cert_kind(der: &[u8]) -> CertKind {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return CertKind::Unknown;
    };
    let mut dns: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns.push(d.to_string());
            }
        }
    }
    let node = dns.iter().any(|d| d == NODE_SAN);
    let operators: Vec<(String, crate::domain::Role)> = dns
        .iter()
        .filter_map(|d| {
            let rest = d.strip_suffix(OPERATOR_SAN)?.strip_suffix('.')?;
            let (name, role) = rest.rsplit_once('.')?;
            let role = crate::domain::Role::parse(role)?;
            crate::domain::validate_name("operator name", name).ok()?;
            Some((name.to_string(), role))
        })
        .collect();
    match (node, operators.as_slice()) {
        (true, []) => {
            let name = dns
                .iter()
                .find_map(|d| d.strip_suffix(&format!(".{NODE_SAN}")))
                .unwrap_or_default()
                .to_string();
            CertKind::Node { name }
        }
        (false, [(name, role)]) => CertKind::Operator {
            name: name.clone(),
            role: *role,
        },
        _ => CertKind::Unknown,
    }
}

/// A new key and a CSR for it, made where the operator's identity will live: only the CSR
/// (its public key) leaves the machine. Returns the key's PEM and the CSR's PEM.
pub fn operator_csr(name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// An operator certificate signed by the cluster CA.
#[derive(Debug, Clone)]
pub struct OperatorCert {
    pub cert_pem: String,
    /// SHA-256 of its DER, lower-case hex.
    pub sha256: String,
    /// Its serial number, hex.
    pub serial: String,
}

/// Sign an operator's CSR with the CA: a client-only certificate for `name` with `role`, valid
/// from a minute before `now_secs` (clock skew) until `not_after_secs` (Unix seconds). The CSR's
/// own parameters are ignored except for its public key.
pub fn sign_operator_csr(
    ca: &CaPem,
    csr_pem: &str,
    name: &str,
    role: crate::domain::Role,
    now_secs: i64,
    not_after_secs: i64,
) -> Result<OperatorCert, TlsError> {
    let mut csr =
        CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| TlsError::Parse {
            path: "operator certificate request".into(),
            message: format!("bad CSR: {e}"),
        })?;
    let time = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TlsError::Parse {
            path: "operator certificate request".into(),
            message: format!("bad validity: {e}"),
        })
    };
    let mut params = CertificateParams::new(vec![format!("{name}.{role}.{OPERATOR_SAN}")])?;
    params
        .distinguished_name
        .push(DnType::CommonName, name.to_string());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = time(now_secs - 60)?;
    params.not_after = time(not_after_secs)?;
    let mut serial = [0u8; 16];
    rand::rng().fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    csr.params = params;
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let cert = csr.signed_by(&issuer)?;
    Ok(OperatorCert {
        sha256: sha256_hex(cert.der()),
        cert_pem: cert.pem(),
        serial: hex::encode(serial),
    })
}

/// An operator's identity on the machine it was made on: `DIR/operator.key` (0600),
/// `DIR/operator.crt` and `DIR/ca.crt` (the cluster CA its nodes must present).
#[derive(Clone)]
pub struct OperatorIdentity {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for OperatorIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorIdentity({:?})", cert_kind(&self.cert))
    }
}

impl OperatorIdentity {
    /// Write the three files under `dir` (created 0700), the key with mode 0600.
    pub fn save(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| TlsError::Write {
                path: dir.display().to_string(),
                source,
            })?;
        write_private(&dir.join("operator.key"), key_pem.as_bytes())?;
        let public = |f: &str, data: &str| {
            std::fs::write(dir.join(f), data).map_err(|source| TlsError::Write {
                path: dir.join(f).display().to_string(),
                source,
            })
        };
        public("operator.crt", cert_pem)?;
        public("ca.crt", ca_pem)
    }

    /// Read the identity under `dir`.
    pub fn load(dir: &Path) -> Result<OperatorIdentity, TlsError> {
        let p = |f: &str| dir.join(f);
        let read = |f: &str| {
            std::fs::read(p(f)).map_err(|e| TlsError::Parse {
                path: p(f).display().to_string(),
                message: e.to_string(),
            })
        };
        let ca = parse_cert(&p("ca.crt").display().to_string(), &read("ca.crt")?)?;
        let cert = parse_cert(
            &p("operator.crt").display().to_string(),
            &read("operator.crt")?,
        )?;
        let key =
            PrivateKeyDer::from_pem_slice(&read("operator.key")?).map_err(|e| TlsError::Parse {
                path: p("operator.key").display().to_string(),
                message: e.to_string(),
            })?;
        Ok(OperatorIdentity {
            ca,
            cert,
            key: Arc::new(key),
        })
    }

    /// Client side: verify the node against the cluster CA, present the operator certificate.
    pub fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(Arc::new(roots))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(cfg)
    }
}

/// The TLS identity of this node: CA certificate, its own certificate and key.
#[derive(Clone)]
pub struct NodeTls {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeTls(ca sha256 {})", self.ca_sha256())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Write a secret file with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let err = |source| TlsError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), TlsError> {
    std::fs::rename(from, to).map_err(|source| TlsError::Write {
        path: to.display().to_string(),
        source,
    })
}

fn parse_cert(path: &str, pem: &[u8]) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem).map_err(|e| TlsError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

impl NodeTls {
    /// Files under `dir` (`<data-dir>/tls`).
    pub fn exists(dir: &Path) -> bool {
        dir.join("node.crt").exists()
    }

    /// Store the CA certificate and this node's certificate and key under `dir`.
    pub fn save(
        dir: &Path,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<NodeTls, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.display().to_string(),
            source,
        })?;
        write_private(&dir.join("ca.crt"), ca_pem.as_bytes())?;
        write_private(&dir.join("node.key"), key_pem.as_bytes())?;
        write_private(&dir.join("node.crt"), cert_pem.as_bytes())?;
        NodeTls::load(dir)
    }

    /// Replace this node's certificate and key under `dir` with a renewed pair. Both are
    /// written aside first, then the key and the certificate are renamed over the old ones;
    /// [`NodeTls::load`] completes a replacement that a crash cut short between the two.
    pub fn replace(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<NodeTls, TlsError> {
        write_private(&dir.join("node.crt.new"), cert_pem.as_bytes())?;
        write_private(&dir.join("node.key.new"), key_pem.as_bytes())?;
        rename(&dir.join("node.key.new"), &dir.join("node.key"))?;
        rename(&dir.join("node.crt.new"), &dir.join("node.crt"))?;
        NodeTls::load(dir)
    }

    /// Load from `dir`.
    pub fn load(dir: &Path) -> Result<NodeTls, TlsError> {
        let p = |f: &str| dir.join(f);
        // A replacement cut short: with the new key in place, the new certificate goes with it;
        // with both new files still aside, the old pair is intact.
        if p("node.crt.new").exists() {
            if p("node.key.new").exists() {
                let _ = std::fs::remove_file(p("node.key.new"));
                let _ = std::fs::remove_file(p("node.crt.new"));
            } else {
                rename(&p("node.crt.new"), &p("node.crt"))?;
            }
        }
        let ca = parse_cert(&p("ca.crt").display().to_string(), &read(&p("ca.crt"))?)?;
        let cert = parse_cert(&p("node.crt").display().to_string(), &read(&p("node.crt"))?)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read(&p("node.key"))?).map_err(|e| TlsError::Parse {
                path: p("node.key").display().to_string(),
                message: e.to_string(),
            })?;
        Ok(NodeTls {
            ca,
            cert,
            key: Arc::new(key),
        })
    }

    /// The secret behind QUIC stateless resets, kept in `<dir>/reset.key` (created on first use)
    /// so that after a restart this node resets peers' connections to its previous run at once
    /// instead of leaving them to time out.
    pub fn reset_secret(dir: &Path) -> Result<[u8; 32], TlsError> {
        let path = dir.join("reset.key");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut out = [0u8; 32];
            if hex::decode_to_slice(text.trim(), &mut out).is_ok() {
                return Ok(out);
            }
            tracing::warn!("'{}' is corrupt; writing a new one", path.display());
        }
        let secret: [u8; 32] = rand::random();
        write_private(&path, hex::encode(secret).as_bytes())?;
        Ok(secret)
    }

    /// The CA fingerprint that join tokens pin.
    pub fn ca_sha256(&self) -> String {
        sha256_hex(&self.ca)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// Server side: present our chain; verify client certificates against the CA. Clients without
    /// a certificate get through the handshake only to be refused by the endpoint unless they
    /// speak the join protocol.
    pub fn server_config(&self, alpns: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.clone(), self.ca.clone()],
                self.key.clone_key(),
            )?;
        cfg.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
        Ok(cfg)
    }

    /// Client side, mutual TLS: verify the peer against the CA, present our certificate.
    pub fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(cfg)
    }
}

/// Client config for a node that is joining: no client certificate; the server's chain must
/// contain a CA whose SHA-256 matches the token's pin, and the server's certificate must be
/// signed by it. Nothing secret is sent before this check passes.
///
/// The returned [`PinCheck`] holds why the server's certificate was refused, if it was: the
/// caller tells "not this cluster" from an unreachable member by it, not by the error's text.
pub fn join_client_config(
    ca_sha256: &str,
    alpn: &[u8],
) -> Result<(rustls::ClientConfig, PinCheck), TlsError> {
    let refused = PinCheck::default();
    let verifier = Arc::new(PinnedCaVerifier {
        pin: ca_sha256.to_ascii_lowercase(),
        provider: provider(),
        refused: refused.clone(),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok((cfg, refused))
}

/// Why a joining node refused the server's certificate (its CA does not match the token's pin,
/// or the certificate is not signed by that CA); empty while nothing was refused.
pub type PinCheck = Arc<std::sync::OnceLock<String>>;

#[derive(Debug)]
struct PinnedCaVerifier {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    refused: PinCheck,
}

impl PinnedCaVerifier {
    /// Remember why the server's certificate was refused (the first reason), and return it.
    fn refuse(&self, e: rustls::Error) -> rustls::Error {
        let _ = self.refused.set(e.to_string());
        e
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server's chain must carry the pinned CA, and its certificate be signed by it.
        let presented: Vec<String> = intermediates.iter().map(|c| sha256_hex(c)).collect();
        let Some(ca) = intermediates.iter().find(|c| sha256_hex(c) == self.pin) else {
            return Err(self.refuse(rustls::Error::General(format!(
                "the server's CA (sha256 {}) does not match the token's CA pin (sha256 {}): the token belongs to another cluster",
                presented.first().map(String::as_str).unwrap_or("none"),
                self.pin
            ))));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner
            .verify_server_cert(end_entity, &[], server_name, ocsp, now)
            .map_err(|e| self.refuse(e))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A join token: `AETHER1.<ca-sha256>.<id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_sha256: String,
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken(id {}, ca {})", self.id, &self.ca_sha256[..12])
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AETHER1.{}.{}.{}", self.ca_sha256, self.id, self.secret)
    }
}

impl JoinToken {
    /// A new token for the CA with fingerprint `ca_sha256`.
    pub fn generate(ca_sha256: &str) -> JoinToken {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 20];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        JoinToken {
            ca_sha256: ca_sha256.into(),
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    /// Parse a token string, saying which part is wrong.
    pub fn parse(s: &str) -> Result<JoinToken, TlsError> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let hexy = |p: &str, len: usize| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            ["AETHER1", ca, id, secret] if hexy(ca, 64) && hexy(id, 12) && hexy(secret, 40) => Ok(JoinToken {
                ca_sha256: ca.to_ascii_lowercase(),
                id: id.to_ascii_lowercase(),
                secret: secret.to_ascii_lowercase(),
            }),
            [prefix, ..] if *prefix != "AETHER1" => Err(TlsError::Token(format!(
                "expected it to start with 'AETHER1.', found '{}': copy the token printed by 'aether token create'",
                prefix.chars().take(12).collect::<String>()
            ))),
            _ => Err(TlsError::Token(
                "expected AETHER1.<64 hex CA sha256>.<12 hex id>.<40 hex secret>: copy the whole token printed by 'aether token create'".into(),
            )),
        }
    }

    /// What the cluster stores instead of the secret.
    pub fn secret_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

/// SHA-256 of a token secret (the server side of [`JoinToken::secret_sha256`]).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_explain_errors() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let s = t.to_string();
        assert!(s.starts_with("AETHER1."));
        assert_eq!(JoinToken::parse(&s).unwrap(), t);
        let e = JoinToken::parse("HELLO.x.y.z").unwrap_err().to_string();
        assert!(e.contains("start with 'AETHER1.'"), "{e}");
        let e = JoinToken::parse(&s[..s.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("40 hex secret"), "{e}");
    }

    #[test]
    fn csr_is_signed_as_plain_node_cert() {
        let ca = create_ca("c1").unwrap();
        let (_key, csr) = new_csr("n2").unwrap();
        let cert = sign_csr(&ca, &csr, "n2", 1_000_000, 3_600).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE"));
        // Valid for the lifetime asked, from a minute before.
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(x.validity().not_before.timestamp(), 1_000_000 - 60);
        assert_eq!(x.validity().not_after.timestamp(), 1_003_600);
        assert!(
            sign_csr(&ca, "garbage", "n2", 1_000_000, 3_600)
                .unwrap_err()
                .to_string()
                .contains("bad CSR")
        );
    }

    #[test]
    fn a_certificate_says_whether_it_is_a_node_or_an_operator() {
        use crate::domain::Role;
        let ca = create_ca("c1").unwrap();
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (node_pem, _) = issue_node_cert(&ca, "n1", 1_000_000, 3_600).unwrap();
        assert_eq!(
            cert_kind(&der(&node_pem)),
            CertKind::Node { name: "n1".into() }
        );
        let (key, csr) = operator_csr("alice").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let op =
            sign_operator_csr(&ca, &csr, "alice", Role::Operator, 1_000_000, 2_000_000).unwrap();
        let d = der(&op.cert_pem);
        assert_eq!(
            cert_kind(&d),
            CertKind::Operator {
                name: "alice".into(),
                role: Role::Operator
            }
        );
        assert_eq!(op.sha256, sha256_hex(&d));
        assert_eq!(op.serial.len(), 32);
        // Validity is what was asked, from a minute before.
        let (_, x) = x509_parser::parse_x509_certificate(&d).unwrap();
        assert_eq!(x.validity().not_before.timestamp(), 1_000_000 - 60);
        assert_eq!(x.validity().not_after.timestamp(), 2_000_000);
        // A CSR asking to be a node is still signed as an operator certificate only.
        let (_k, node_csr) = new_csr("n9").unwrap();
        let op =
            sign_operator_csr(&ca, &node_csr, "bob", Role::Viewer, 1_000_000, 2_000_000).unwrap();
        assert_eq!(
            cert_kind(&der(&op.cert_pem)),
            CertKind::Operator {
                name: "bob".into(),
                role: Role::Viewer
            }
        );
        assert_eq!(cert_kind(b"not a certificate"), CertKind::Unknown);
        // The CA itself is neither.
        assert_eq!(cert_kind(&der(&ca.cert_pem)), CertKind::Unknown);
    }

    #[test]
    fn a_certificate_file_says_when_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let ca = create_ca("c1").unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, &ca.cert_pem).unwrap();
        // rcgen's default validity ends on 4096-01-01.
        assert_eq!(cert_not_after(&path).unwrap(), 67_090_118_400);
        std::fs::write(&path, "not a certificate").unwrap();
        let e = cert_not_after(&path).unwrap_err().to_string();
        assert!(e.starts_with("bad certificate or key in '"), "{e}");
        let e = cert_not_after(&dir.path().join("gone.crt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gone.crt"), "{e}");
        let (cert, _) = issue_node_cert(&ca, "n1", 1_000_000, 3_600).unwrap();
        std::fs::write(&path, cert).unwrap();
        assert_eq!(cert_validity(&path).unwrap(), (1_000_000 - 60, 1_003_600));
    }

    #[test]
    fn a_node_certificate_is_renewed_with_a_third_of_its_life_left() {
        let ttl = 3_000;
        // Signed at 1_000_000 for 3_000 s: not_before a minute earlier.
        let (nb, na) = (1_000_000 - CLOCK_SKEW_SECS, 1_003_000);
        assert!(!renew_due(1_000_000, nb, na, ttl), "fresh");
        assert!(!renew_due(1_002_000, nb, na, ttl), "exactly a third left");
        assert!(renew_due(1_002_001, nb, na, ttl), "less than a third left");
        assert!(renew_due(1_003_000, nb, na, ttl), "expiring now");
        assert!(renew_due(1_009_000, nb, na, ttl), "expired long ago");
        // Signed under a longer lifetime (or none: rcgen's default ends in 4096).
        assert!(renew_due(1_000_000, nb, 67_090_118_400, ttl));
        assert!(
            !renew_due(1_000_000, nb, na, 365 * 86_400),
            "a longer ttl keeps it"
        );
        // No lifetime at all.
        assert!(renew_due(1_000_000, 1_000_000, 1_000_000, ttl));
    }
}
