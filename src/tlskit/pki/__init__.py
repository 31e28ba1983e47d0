"""tlskit.pki: keys, CSRs, certificates, CA hierarchies, revocation, PKCS#12, inspection and verification."""
