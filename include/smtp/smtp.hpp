/// @file
/// All of libsmtp's public API in one include.

/// @namespace smtp
/// The public API of libsmtp, the sans-IO SMTP protocol core (no sockets, files, threads or clocks).
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
