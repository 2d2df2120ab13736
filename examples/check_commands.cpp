// check_commands: reads SMTP command lines on standard input and prints, for each,
// what libsmtp makes of it: the verb and its arguments, or the reply a server would
// send. A small, complete use of the command framing and parser.
//
//   printf 'MAIL FROM:<a@example.org> SIZE=100\r\n' | check_commands
//   MAIL path=<a@example.org> size=100
//
// Build it against an installed libsmtp:
//   c++ -std=c++20 check_commands.cpp $(pkg-config --cflags --libs libsmtp)
#include <smtp/command.hpp>
#include <smtp/reply.hpp>

#include <iostream>
#include <iterator>
#include <string>
#include <string_view>

namespace {

void describe(const smtp::Command& c) {
    std::cout << smtp::verb_name(c.verb);
    if (!c.domain.empty()) std::cout << " domain=" << c.domain;
    if (c.verb == smtp::Verb::mail || c.verb == smtp::Verb::rcpt)
        std::cout << " path=<" << c.path.mailbox << ">";
    if (c.size) std::cout << " size=" << *c.size;
    if (c.body == smtp::Body::eight_bit_mime) std::cout << " body=8bitmime";
    if (c.smtputf8) std::cout << " smtputf8";
    std::cout << '\n';
}

}  // namespace

int main() {
    std::string input{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    smtp::CommandLineReader reader;
    std::string_view rest = input;

    for (;;) {
        const auto line = reader.next(rest);
        rest.remove_prefix(line.consumed);
        if (line.status == smtp::CommandLineReader::Status::need_more) break;

        std::string reply;
        if (line.status == smtp::CommandLineReader::Status::error) {
            smtp::append_error_reply(reply, line.error);
        } else {
            smtp::Command command;
            const auto result = smtp::parse_command(line.text, command);
            if (result.ok()) {
                describe(command);
                continue;
            }
            smtp::append_error_reply(reply, result.error, result.detail);
        }
        std::cout << reply.substr(0, reply.size() - 2) << '\n';  // without CRLF
    }
    if (!rest.empty()) std::cout << "incomplete last line: " << rest.size() << " bytes\n";
    return 0;
}
