// Package layering holds only a test: it checks the import graph of the module against the
// layering of DESIGN.md §1 (nothing imports upward). Adding a package means adding it to the
// table in layering_test.go, deliberately.
package layering
