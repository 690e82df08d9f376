package controller

import (
	"sigs.k8s.io/controller-runtime/pkg/config"
)

// ctrlConfigSkipNameValidation lets the suite start a second manager (the
// restart specs) with controllers of the same names in one process.
func ctrlConfigSkipNameValidation() config.Controller {
	skip := true
	return config.Controller{SkipNameValidation: &skip}
}
