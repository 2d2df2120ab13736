// apps/common/tls.hpp: TLS for STARTTLS (RFC 3207) on OpenSSL, driven non-blocking
// from the daemons' select()/pselect() loops. libsmtp only says when TLS starts; the
// bytes of the TLS layer are made here.
//
// A Context is an SSL_CTX: smtpd's certificate and key, or smtpc's trust store. A
// Stream is one SSL object on a connected, non-blocking socket (OpenSSL reads and
// writes the socket itself, through a BIO that sends with MSG_NOSIGNAL, so no write
// raises SIGPIPE). Every call returns at once: when OpenSSL needs the socket
// readable or writable first, the call says so (want_read / want_write) and the loop
// calls it again once select() reports that. Handshakes and TLS 1.3 key updates are
// handled this way (TLS 1.2 renegotiation is refused); nothing ever blocks a loop.
//
// Two things a loop must know:
//  - read() may leave decrypted bytes inside OpenSSL (a record is larger than the
//    buffer given); select() does not see them. has_buffered_input() says so: read
//    again without waiting for select().
//  - a read may want the socket writable and a write may want it readable; the loop
//    watches what the last call asked for, and on either event retries both.
//
// Verification (smtpc): the peer's chain against the trust store (the system's CA
// store, or a CA file) and its name against the expected host (SSL_set1_host, RFC
// 6125 rules). Opportunistic use records the result but lets the handshake finish
// (verified() tells); a required verification fails the handshake instead.
//
// Errors: text for the logs, from OpenSSL's error queue (which every call leaves
// empty, so one connection's error never shows up in another's) or from errno.
//
// Thread safety: a Context may be shared by threads once made (OpenSSL allows
// SSL_new from many threads); a Stream belongs to one thread at a time.
#ifndef SMTP_APPS_COMMON_TLS_HPP
#define SMTP_APPS_COMMON_TLS_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

// OpenSSL's types, declared so that only tls.cpp includes OpenSSL's headers.
struct ssl_ctx_st;
struct ssl_st;

namespace smtp::tls {

class Context {
public:
    // For a server (smtpd): the certificate chain in PEM (the leaf first, then any
    // intermediates) and its private key in PEM; the key must match the certificate.
    // Returns nullptr and sets `error` ("tls_cert /path: No such file or directory",
    // "tls_key /path: key does not match the certificate") on failure.
    static std::shared_ptr<const Context> server(const std::string& cert_file, const std::string& key_file,
                                                 std::string& error);
    // For a client (smtpc): peers are verified against `ca_file` (PEM, one or more CA
    // certificates) when it is not empty, else against the system's default store.
    // Returns nullptr and sets `error` on failure.
    static std::shared_ptr<const Context> client(const std::string& ca_file, std::string& error);

    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    ssl_ctx_st* native() const noexcept { return context_; }

private:
    explicit Context(ssl_ctx_st* context) noexcept : context_(context) {}
    ssl_ctx_st* context_;
};

class Stream {
public:
    enum class Status : std::uint8_t {
        done,        // handshake(): finished; read()/write(): `bytes` moved (at least 1)
        want_read,   // call again once the socket is readable
        want_write,  // call again once the socket is writable
        closed,      // read(): the peer ended the stream (close_notify or EOF)
        failed,      // a protocol, verification or socket error: error() says which;
                     // the stream is unusable (shutdown() sends nothing)
    };
    struct Result {
        Status status = Status::failed;
        std::size_t bytes = 0;
    };

    // The server side of a handshake on `fd` (not owned: the caller closes it after
    // the Stream is destroyed). Nothing is read or written before handshake().
    static Stream accept(const Context& context, int fd);
    // The client side: `host` is sent as SNI (when it is a name, not an address
    // literal) and is the name the certificate is checked against. With
    // `require_verified` a chain or name that does not verify fails the handshake;
    // without, the handshake finishes anyway and verified() is false.
    static Stream connect(const Context& context, int fd, std::string_view host, bool require_verified);

    Stream(Stream&& other) noexcept;
    Stream& operator=(Stream&& other) noexcept;
    ~Stream();  // frees the SSL object; sends nothing (call shutdown() for that)

    // Runs the handshake as far as the socket allows.
    Result handshake();
    // Decrypted input into `buffer` (not empty): done with bytes > 0, or why not.
    Result read(std::span<char> buffer);
    // Encrypts and sends a prefix of `data` (not empty); done says how much was
    // taken. After want_read/want_write call again with data that begins with the
    // same bytes (OpenSSL keeps the record it has made; the buffer may move).
    Result write(std::string_view data);
    // One attempt at sending close_notify, never waiting for the peer's; nothing after
    // a failure. The socket stays open.
    void shutdown() noexcept;

    // Decrypted bytes are waiting inside OpenSSL: read() has input now.
    bool has_buffered_input() const noexcept;

    // After a successful handshake: "TLSv1.3", "TLS_AES_256_GCM_SHA384", the cipher's
    // secret bits ("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" is how
    // the logs show them), and whether the peer's certificate verified (chain and
    // name; client side only: smtpd asks for no client certificate, so false there).
    std::string_view protocol() const noexcept;
    std::string_view cipher() const noexcept;
    int cipher_bits() const noexcept;
    bool verified() const noexcept;
    // Why the certificate did not verify ("self-signed certificate", "hostname
    // mismatch"); empty when it did or when nothing was checked.
    std::string verify_error() const;

    // Why the last call failed; empty when none did.
    const std::string& error() const noexcept { return error_; }

private:
    explicit Stream(ssl_st* ssl) noexcept : ssl_(ssl) {}
    // Status of an SSL_* call that returned `ret`, draining the error queue into
    // error_ when it failed.
    Status classify(int ret);

    ssl_st* ssl_ = nullptr;  // null only when SSL_new failed (error_ says so)
    std::string error_;
};

}  // namespace smtp::tls

#endif
