//! `rollover completion SHELL`: shell completions, generated from the command line
//! definition itself (clap_complete), so they never drift from it.

use clap_complete::Shell;

use crate::output::OutputArgs;
use crate::status::Status;

/// The long help of the command.
pub const LONG_ABOUT: &str = "\
Print a completion script for bash, zsh or fish on standard output (or -o FILE).

Exit status: 0 when written, 1 when the output cannot be written, 2 on bad input.";

/// Examples shown after the help.
pub const EXAMPLES: &str = "\
Examples:
  rollover completion bash > /etc/bash_completion.d/rollover
  source <(rollover completion bash)
  rollover completion zsh -o ~/.zfunc/_rollover
  rollover completion fish > ~/.config/fish/completions/rollover.fish";

/// Shells with completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellArg {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Arguments of `rollover completion`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: ShellArg,
    /// Write the script to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// Run `rollover completion`.
pub fn run(args: &CompletionArgs, command: &mut clap::Command) -> anyhow::Result<Status> {
    let shell = match args.shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, command, "rollover", &mut script);
    let text = String::from_utf8(script)?;
    OutputArgs {
        format: crate::output::Format::Text,
        output: args.output.clone(),
        json: false,
    }
    .write(&text)?;
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn completions_name_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut crate::Cli::command(), "rollover", &mut out);
            let text = String::from_utf8(out).unwrap();
            for command in ["rotate", "rollback", "check", "watch"] {
                assert!(text.contains(command), "{shell:?}: {command}");
            }
        }
    }
}
