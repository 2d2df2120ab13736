// smtp/smtp.hpp: all of libsmtp's public API in one include.
#ifndef SMTP_SMTP_HPP
#define SMTP_SMTP_HPP

#include <smtp/client_session.hpp>
#include <smtp/command.hpp>
#include <smtp/data.hpp>
#include <smtp/error.hpp>
#include <smtp/limits.hpp>
#include <smtp/reply.hpp>
#include <smtp/server_session.hpp>

#endif
