#!/bin/sh
# Make a certificate authority (CA), a server certificate for localhost and
# a client certificate, with the openssl command line, in the directory
# given (by default the current one):
#
#   ca.pem, ca.key          the CA's certificate (give it to clients and
#                           servers as the one to trust) and private key
#   server.pem, server.key  the server's certificate, for the name localhost
#                           and the addresses 127.0.0.1 and ::1, and its key
#   client.pem, client.key  a client certificate, subject CN=sensor-1,O=Example
#
# For a real server, put its DNS names (and addresses, if clients use them)
# in subjectAltName below instead.  Keep the .key files private.
set -eu
cd "${1:-.}"

# The certificate authority: a key, and a certificate it signs itself.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key
cat > ca.ext <<'END'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
END
openssl req -new -key ca.key -subj "/O=Example/CN=Example CA" -out ca.csr
openssl x509 -req -in ca.csr -signkey ca.key -days 3650 \
    -extfile ca.ext -out ca.pem

# The server: a key, and a certificate the CA signs, for the names clients
# connect to.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server.key
cat > server.ext <<'END'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
authorityKeyIdentifier = keyid
END
openssl req -new -key server.key -subj "/O=Example/CN=localhost" -out server.csr
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 825 -extfile server.ext -out server.pem

# A client: a key, and a certificate the CA signs; its subject is the
# client's identity for SASL EXTERNAL.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out client.key
cat > client.ext <<'END'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
END
openssl req -new -key client.key -subj "/O=Example/CN=sensor-1" -out client.csr
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 825 -extfile client.ext -out client.pem

rm ca.csr ca.ext server.csr server.ext client.csr client.ext
chmod 600 ca.key server.key client.key
