// Command planreader reads a plan or a state as the tools built on hashicorp/terraform-json read
// Terraform's (`terraform show -json`), and prints what it found as JSON, for recon's tests:
//
//	planreader plan FILE    tfjson.Plan: Validate, sanitize.SanitizePlan, then every section walked
//	planreader state FILE   tfjson.State: Validate, then its resources walked
//
// It exits 1 with the library's error when the document does not decode or validate (a format
// version outside ">= 0.1, < 2.0", for one), and panics where the library itself would (a plan
// without a configuration, for sanitize).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	tfjson "github.com/hashicorp/terraform-json"
	"github.com/hashicorp/terraform-json/sanitize"
)

type resource struct {
	Address      string                 `json:"address"`
	Key          string                 `json:"key"` // type.name[index], as Terraform writes an instance
	Mode         string                 `json:"mode"`
	Type         string                 `json:"type"`
	Name         string                 `json:"name"`
	Index        interface{}            `json:"index"`
	ProviderName string                 `json:"provider_name"`
	Values       map[string]interface{} `json:"values"`
	Sensitive    json.RawMessage        `json:"sensitive_values"`
	DependsOn    []string               `json:"depends_on"`
	Tainted      bool                   `json:"tainted"`
}

type change struct {
	Address      string      `json:"address"`
	Key          string      `json:"key"`
	Kind         string      `json:"kind"` // from tfjson.Actions' own predicates
	Actions      []string    `json:"actions"`
	ActionReason string      `json:"action_reason"`
	Before       interface{} `json:"before"`
	After        interface{} `json:"after"`
	AfterUnknown interface{} `json:"after_unknown"`
	ReplacePaths interface{} `json:"replace_paths"`
}

type config struct {
	Address     string   `json:"address"`
	Type        string   `json:"type"`
	Name        string   `json:"name"`
	ProviderKey string   `json:"provider_config_key"`
	Expressions []string `json:"expressions"`
	DependsOn   []string `json:"depends_on"`
}

type planReport struct {
	FormatVersion    string                     `json:"format_version"`
	TerraformVersion string                     `json:"terraform_version"`
	Planned          []resource                 `json:"planned"`
	Prior            []resource                 `json:"prior"`
	Changes          []change                   `json:"changes"`
	Drift            []change                   `json:"drift"`
	Config           []config                   `json:"config"`
	Providers        []string                   `json:"providers"`
	Relevant         []tfjson.ResourceAttribute `json:"relevant"`
	Timestamp        string                     `json:"timestamp"`
	Complete         *bool                      `json:"complete"`
	Duplicates       []string                   `json:"duplicates"` // keys seen twice among planned or changes
	Sanitized        bool                       `json:"sanitized"`
}

type stateReport struct {
	FormatVersion    string     `json:"format_version"`
	TerraformVersion string     `json:"terraform_version"`
	Resources        []resource `json:"resources"`
}

func key(typ, name string, index interface{}) string {
	switch i := index.(type) {
	case nil:
		return fmt.Sprintf("%s.%s", typ, name)
	case string:
		return fmt.Sprintf("%s.%s[%q]", typ, name, i)
	default:
		return fmt.Sprintf("%s.%s[%v]", typ, name, i)
	}
}

func walk(m *tfjson.StateModule, out *[]resource) {
	if m == nil {
		return
	}
	for _, r := range m.Resources {
		*out = append(*out, resource{r.Address, key(r.Type, r.Name, r.Index), string(r.Mode), r.Type, r.Name,
			r.Index, r.ProviderName, r.AttributeValues, r.SensitiveValues, r.DependsOn, r.Tainted})
	}
	for _, c := range m.ChildModules {
		walk(c, out)
	}
}

func kind(a tfjson.Actions) string {
	switch {
	case a.NoOp():
		return "no-op"
	case a.Create():
		return "create"
	case a.Update():
		return "update"
	case a.DestroyBeforeCreate():
		return "replace (delete first)"
	case a.CreateBeforeDestroy():
		return "replace (create first)"
	case a.Delete():
		return "delete"
	}
	return "unknown"
}

func changes(rcs []*tfjson.ResourceChange) []change {
	out := []change{}
	for _, rc := range rcs {
		actions := []string{}
		for _, a := range rc.Change.Actions {
			actions = append(actions, string(a))
		}
		out = append(out, change{rc.Address, key(rc.Type, rc.Name, rc.Index), kind(rc.Change.Actions), actions,
			string(rc.ActionReason), rc.Change.Before, rc.Change.After, rc.Change.AfterUnknown, rc.Change.ReplacePaths})
	}
	return out
}

func duplicates(keys []string) []string {
	seen, dup := map[string]bool{}, []string{}
	for _, k := range keys {
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
	}
	return dup
}

func readPlan(data []byte) (planReport, error) {
	var p tfjson.Plan
	if err := json.Unmarshal(data, &p); err != nil { // UnmarshalJSON calls Validate
		return planReport{}, err
	}
	if err := p.Validate(); err != nil {
		return planReport{}, err
	}
	clean, err := sanitize.SanitizePlan(&p)
	if err != nil {
		return planReport{}, fmt.Errorf("sanitize: %w", err)
	}
	r := planReport{FormatVersion: p.FormatVersion, TerraformVersion: p.TerraformVersion,
		Planned: []resource{}, Prior: []resource{}, Config: []config{}, Providers: []string{},
		Relevant: p.RelevantAttributes, Timestamp: p.Timestamp, Complete: p.Complete, Sanitized: clean != nil}
	if p.PlannedValues != nil {
		walk(p.PlannedValues.RootModule, &r.Planned)
	}
	if p.PriorState != nil && p.PriorState.Values != nil {
		walk(p.PriorState.Values.RootModule, &r.Prior)
	}
	r.Changes, r.Drift = changes(p.ResourceChanges), changes(p.ResourceDrift)
	if p.Config != nil {
		for name := range p.Config.ProviderConfigs {
			r.Providers = append(r.Providers, name+"="+p.Config.ProviderConfigs[name].FullName)
		}
		sort.Strings(r.Providers)
		if p.Config.RootModule != nil {
			for _, c := range p.Config.RootModule.Resources {
				exprs := []string{}
				for k := range c.Expressions {
					exprs = append(exprs, k)
				}
				sort.Strings(exprs)
				r.Config = append(r.Config, config{c.Address, c.Type, c.Name, c.ProviderConfigKey, exprs, c.DependsOn})
			}
		}
	}
	var planned, changed []string
	for _, x := range r.Planned {
		planned = append(planned, x.Key)
	}
	for _, x := range r.Changes {
		changed = append(changed, x.Key)
	}
	r.Duplicates = append(duplicates(planned), duplicates(changed)...)
	return r, nil
}

func readState(data []byte) (stateReport, error) {
	var s tfjson.State
	if err := json.Unmarshal(data, &s); err != nil {
		return stateReport{}, err
	}
	if err := s.Validate(); err != nil {
		return stateReport{}, err
	}
	r := stateReport{FormatVersion: s.FormatVersion, TerraformVersion: s.TerraformVersion, Resources: []resource{}}
	if s.Values != nil {
		walk(s.Values.RootModule, &r.Resources)
	}
	return r, nil
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "plan" && os.Args[1] != "state") {
		fmt.Fprintln(os.Stderr, "usage: planreader plan|state FILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var report interface{}
	if os.Args[1] == "plan" {
		report, err = readPlan(data)
	} else {
		report, err = readState(data)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(report, "", " ")
	fmt.Println(string(out))
}
