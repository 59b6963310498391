# A platform team's rules for online endpoints, written as such rules are written for Terraform plans
# (`terraform show -json` as input): the changes from resource_changes, the result from planned_values,
# what exists now from prior_state.
package platform.endpoints

import rego.v1

max_instances := 4

# Clients lose their scoring URI when an endpoint goes: never delete one in a plan.
deny contains msg if {
	some rc in input.resource_changes
	rc.type == "recon_endpoint"
	"delete" in rc.change.actions
	msg := sprintf("%s: deleting an endpoint is not allowed", [rc.address])
}

# Cost: no deployment above max_instances once the plan is applied.
deny contains msg if {
	some r in input.planned_values.root_module.resources
	r.type == "recon_deployment"
	r.values.instance_count > max_instances
	msg := sprintf("%s.%s[%q]: instance_count %d is above %d", [r.type, r.name, r.index, r.values.instance_count, max_instances])
}

# Ownership: every endpoint carries a team tag.
deny contains msg if {
	some r in input.planned_values.root_module.resources
	r.type == "recon_endpoint"
	not r.values.tags.team
	msg := sprintf("%s: tags.team is required", [r.address])
}

# A replacement takes a deployment down: say why, with Terraform's reason keyword.
warn contains msg if {
	some rc in input.resource_changes
	rc.change.actions == ["delete", "create"]
	msg := sprintf("%s is replaced (%s)", [rc.address, rc.action_reason])
}

# A deployment that exists now and is gone after the plan, while its endpoint stays.
warn contains msg if {
	some before in input.prior_state.values.root_module.resources
	before.type == "recon_deployment"
	not planned(before.address)
	planned_endpoint(before.values.endpoint_name)
	msg := sprintf("%s is removed from %s", [before.address, before.values.endpoint_name])
}

planned(address) if {
	some r in input.planned_values.root_module.resources
	r.address == address
}

planned_endpoint(name) if {
	some r in input.planned_values.root_module.resources
	r.type == "recon_endpoint"
	r.name == name
}

# What the plan leaves, per resource type.
resources_after[t] := n if {
	some t in {r.type | some r in input.planned_values.root_module.resources}
	n := count([r | some r in input.planned_values.root_module.resources; r.type == t])
}
