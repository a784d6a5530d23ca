package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"
)

// customColumns prints -o custom-columns=HEADER:PATH,... and -o
// custom-columns-file=FILE as kubectl does: a row per object, a column per
// JSONPath (values joined by commas, <none> when there is none).
type customColumns struct {
	headers   []string
	paths     []*jsonpath.JSONPath
	noHeaders bool
	printed   bool // the header line is out (get -w prints it once)
}

var _ printers.ResourcePrinter = (*customColumns)(nil)

// customColumnsPrinter returns the printer for output if it is a
// custom-columns format (ok), or an error naming what is wrong with it.
func customColumnsPrinter(output string, noHeaders bool) (p printers.ResourcePrinter, ok bool, err error) {
	format, arg, _ := strings.Cut(output, "=")
	var spec string
	switch format {
	case "custom-columns":
		spec = arg
	case "custom-columns-file":
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, true, fmt.Errorf("-o custom-columns-file: %w", err)
		}
		if spec, err = columnsFromFile(string(data)); err != nil {
			return nil, true, fmt.Errorf("-o custom-columns-file=%s: %w", arg, err)
		}
	default:
		return nil, false, nil
	}
	c, err := parseCustomColumns(spec)
	if err != nil {
		return nil, true, fmt.Errorf("-o %s: %w", format, err)
	}
	c.noHeaders = noHeaders
	return c, true, nil
}

// columnsFromFile turns kubectl's file format (a line of headers, a line of
// paths, aligned) into a HEADER:PATH,... spec.
func columnsFromFile(data string) (string, error) {
	var lines [][]string
	for _, l := range strings.Split(data, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	if len(lines) != 2 || len(lines[0]) != len(lines[1]) {
		return "", fmt.Errorf("want two lines, headers and paths, with as many of each")
	}
	cols := make([]string, len(lines[0]))
	for i := range cols {
		cols[i] = lines[0][i] + ":" + lines[1][i]
	}
	return strings.Join(cols, ","), nil
}

func parseCustomColumns(spec string) (*customColumns, error) {
	if spec == "" {
		return nil, fmt.Errorf("no columns given: want HEADER:JSONPATH,... (e.g. NAME:.metadata.name,HOLDER:.spec.holderIdentity)")
	}
	c := &customColumns{}
	for _, col := range strings.Split(spec, ",") {
		header, path, ok := strings.Cut(col, ":")
		if !ok || header == "" || path == "" {
			return nil, fmt.Errorf("column %q: want HEADER:JSONPATH (e.g. HOLDER:.spec.holderIdentity)", col)
		}
		jp := jsonpath.New(header).AllowMissingKeys(true)
		if err := jp.Parse(relaxedJSONPath(path)); err != nil {
			return nil, fmt.Errorf("column %q: %w", col, err)
		}
		c.headers = append(c.headers, header)
		c.paths = append(c.paths, jp)
	}
	return c, nil
}

// relaxedJSONPath accepts a path as kubectl does: {.a.b}, .a.b or a.b.
func relaxedJSONPath(p string) string {
	p = strings.TrimSpace(p)
	if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
		return p
	}
	return "{." + strings.TrimPrefix(p, ".") + "}"
}

// PrintObj prints a row for obj, or for each item of a list.
func (c *customColumns) PrintObj(obj runtime.Object, w io.Writer) error {
	objs := []runtime.Object{obj}
	if meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return err
		}
		objs = items
	}
	tw := printers.GetNewTabWriter(w)
	if !c.noHeaders && !c.printed {
		fmt.Fprintln(tw, strings.Join(c.headers, "\t"))
	}
	c.printed = true
	for _, o := range objs {
		row, err := c.row(o)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func (c *customColumns) row(obj runtime.Object) ([]string, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	row := make([]string, len(c.paths))
	for i, jp := range c.paths {
		results, err := jp.FindResults(u)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.headers[i], err)
		}
		var vals []string
		for _, r := range results {
			for _, v := range r {
				vals = append(vals, fmt.Sprint(v.Interface()))
			}
		}
		row[i] = noValue
		if len(vals) > 0 {
			row[i] = strings.Join(vals, ",")
		}
	}
	return row, nil
}
