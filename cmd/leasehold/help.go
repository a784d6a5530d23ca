package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// helpWidth is the width help is written for: Long texts and examples are
// wrapped by hand to it, flag descriptions by the usage template.
const helpWidth = 80

// exitStatusCommon is the exit status section of every command that does
// not list its own.
const exitStatusCommon = `Exit status:
  0  success
  1  an error: the API could not be reached, RBAC denied a request (the
     message names the verb), a Lease was not found, no cluster configured
  2  usage: bad flags or arguments`

// usageTemplate is cobra's default usage template with flag descriptions
// wrapped to helpWidth, and a last line that fits it.
var usageTemplate = strings.NewReplacer(
	"{{.LocalFlags.FlagUsages", "{{.LocalFlags.FlagUsagesWrapped 80",
	"{{.InheritedFlags.FlagUsages", "{{.InheritedFlags.FlagUsagesWrapped 80",
	`[command] --help" for more information about a command.`, `[command] --help" for more about a command.`,
).Replace((&cobra.Command{}).UsageTemplate())

// finishHelp adds cobra's help command now, so that it is documented like
// the others, wraps flag help to helpWidth, and gives every command that
// does not list its exit statuses the common ones. Long lines that are left
// (text from elsewhere) are wrapped, with hanging indentation.
func finishHelp(root *cobra.Command) {
	root.SetUsageTemplate(usageTemplate)
	root.InitDefaultHelpCmd()
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if !strings.Contains(c.Long, "Exit status:") {
			long := strings.TrimRight(c.Long, "\n")
			if long == "" {
				long = c.Short + "."
			}
			c.Long = long + "\n\n" + exitStatusCommon
		}
		c.Long = wrapLines(c.Long, helpWidth)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// wrapLines breaks each line of s longer than width at spaces. A broken
// line continues under its text: past its indentation and, in a list such
// as "  NAME  what it is", past the name.
func wrapLines(s string, width int) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		l := []rune(line)
		indent := hangingIndent(line)
		for len(l) > width {
			cut := width
			for cut > indent && l[cut] != ' ' {
				cut--
			}
			if cut <= indent {
				break // a word longer than the line: leave it
			}
			out = append(out, strings.TrimRight(string(l[:cut]), " "))
			l = []rune(strings.Repeat(" ", indent) + strings.TrimLeft(string(l[cut:]), " "))
		}
		out = append(out, string(l))
	}
	return strings.Join(out, "\n")
}

// hangingIndent is where the text of a continued line starts: after the
// first gap of two or more spaces that follows the indentation, else after
// the indentation.
func hangingIndent(line string) int {
	l := []rune(line)
	lead := 0
	for lead < len(l) && l[lead] == ' ' {
		lead++
	}
	for i := lead; i+1 < len(l) && i < helpWidth/2; i++ {
		if l[i] == ' ' && l[i+1] == ' ' {
			j := i
			for j < len(l) && l[j] == ' ' {
				j++
			}
			if j < len(l) && j < helpWidth/2 {
				return j
			}
			break
		}
	}
	return lead
}
