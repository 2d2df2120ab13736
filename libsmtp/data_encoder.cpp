// DataEncoder: message content to the DATA stream (RFC 5321 §4.5.2, §2.3.8).
//
// Copies the input in runs as long as possible: a run breaks only where a byte
// must be added (a stuffing dot) or changed (a bare CR or LF becomes CRLF). So the
// output of one call is at most twice its input plus two octets (a held CR's CRLF).
#include <smtp/data.hpp>

#include "line_scan.hpp"

namespace smtp {

void DataEncoder::encode(std::string_view content, std::string& out) {
    const std::size_t size = content.size();
    std::size_t p = 0;
    if (pending_cr_ && size != 0) {
        // The last chunk ended in CR: with this LF it is a CRLF, alone it is a bare
        // CR; both are sent as CRLF.
        pending_cr_ = false;
        out += "\r\n";
        if (content[0] == '\n') p = 1;
        at_line_start_ = true;
    }
    std::size_t run = p;  // start of the bytes not yet appended, to be copied as they are
    while (p < size) {
        if (at_line_start_ && content[p] == '.') {
            // §4.5.2: a line starting with "." gets one more; the run then copies
            // the original dot after it.
            out.append(content, run, p - run);
            out += '.';
            run = p;
        }
        at_line_start_ = false;
        const std::size_t q = detail::find_line_break(content.data(), p, size);
        if (q == size) break;
        if (content[q] == '\r') {
            if (q + 1 == size) {  // LF may come in the next chunk
                out.append(content, run, q - run);
                run = size;
                pending_cr_ = true;
                break;
            }
            if (content[q + 1] == '\n') {
                p = q + 2;
                at_line_start_ = true;
                continue;
            }
        }
        // §2.3.8: a bare CR or LF must not be sent; it becomes CRLF.
        out.append(content, run, q - run);
        out += "\r\n";
        p = q + 1;
        run = p;
        at_line_start_ = true;
    }
    if (run < size) out.append(content, run, size - run);
}

void DataEncoder::finish(std::string& out) {
    if (pending_cr_ || !at_line_start_) out += "\r\n";
    out += ".\r\n";
    at_line_start_ = true;
    pending_cr_ = false;
}

}  // namespace smtp
