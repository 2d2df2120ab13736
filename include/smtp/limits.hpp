/// @file
/// Every size limit libsmtp enforces, in one struct.
///
/// Each field cites the RFC section that sets it and what other implementations use.
/// A limit is checked on incomplete, still-buffered input as well as on complete
/// lines, so no peer can make libsmtp hold more than the limit.
///
/// Plain data: copy it freely; thread safety is that of a struct.
#ifndef SMTP_LIMITS_HPP
#define SMTP_LIMITS_HPP

#include <cstddef>
#include <cstdint>

namespace smtp {

/// The size limits of a session, parser or codec, in octets unless said otherwise.
struct Limits {
    /// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
    /// (Postfix line_length_limit 2048; go-smtp 2000: both more lenient.)
    std::size_t command_line = 512;

    /// RFC 5321 §4.5.3.1.1: local part at most 64 octets.
    std::size_t local_part = 64;

    /// RFC 5321 §4.5.3.1.2: domain at most 255 octets.
    std::size_t domain = 255;
    /// RFC 1035 §2.3.4: a label of a domain at most 63 octets.
    std::size_t domain_label = 63;

    /// RFC 5321 §4.5.3.1.3: reverse-path or forward-path at most 256 octets,
    /// counting the angle brackets.
    std::size_t path = 256;

    /// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF.
    std::size_t reply_line = 512;

    /// Lines of one reply. RFC 5321 sets no bound on the lines of a multi-line reply.
    /// An EHLO reply has about 15; 100 leaves room and bounds a hostile server's
    /// endless reply.
    std::size_t reply_lines = 100;

    /// RFC 5321 §4.5.3.1.6: a text line of the message is at most 1000 octets
    /// including CRLF. What happens to a longer one is DataOptions::long_lines.
    std::size_t text_line = 1000;

    /// Largest message accepted, in octets after dot-unstuffing. RFC 5321
    /// §4.5.3.1.10 asks for at least 64K; Postfix message_size_limit 10240000.
    std::uint64_t message_size = 10240000;

    /// RFC 3461 §4.4: ENVID is at most 100 characters.
    std::size_t envid = 100;
    /// RFC 3461 §4.4: ORCPT's value is at most 500 characters.
    std::size_t orcpt = 500;
};

}  // namespace smtp

#endif
