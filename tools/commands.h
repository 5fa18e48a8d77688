/* The smtpbulk command's subcommands. Each returns the process exit status. */
#ifndef SB_TOOLS_COMMANDS_H
#define SB_TOOLS_COMMANDS_H

int cmd_load(int argc, char **argv);
int cmd_sink(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_enqueue(int argc, char **argv);

#endif
