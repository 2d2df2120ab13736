// smtpd: the receiving SMTP daemon. See master.hpp for the process model and
// settings.hpp (or `smtpd --help`) for the configuration.
#include "master.hpp"

int main(int argc, char** argv) { return smtp::smtpd::run_smtpd(argc, argv); }
