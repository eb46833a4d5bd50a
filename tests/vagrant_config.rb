# Loads the project's Vagrantfile with Vagrant's own configuration loader, as
# `vagrant up` would, and prints as JSON what the checks need: the forwarded
# ports (Vagrant's own SSH forward left out) and the extra variables the
# ansible_local provisioner passes to site.yml. No VM is started.
#   ruby tests/vagrant_config.rb PROJECT_DIR [PROVIDER]
require "json"
require "vagrant"

project = ARGV.fetch(0)
provider = (ARGV[1] || "libvirt").to_sym
env = Vagrant::Environment.new(cwd: project, ui_class: Vagrant::UI::Silent)
name = env.vagrantfile.machine_names.first
config = env.vagrantfile.machine_config(name, provider, env.boxes)[:config]
forwards = config.vm.networks
                 .select { |type, options| type == :forwarded_port && options[:id] != "ssh" }
                 .map { |_, options| options.slice(:guest, :host, :host_ip) }
ansible = config.vm.provisioners.find { |p| p.type == :ansible_local }
puts JSON.generate({ "forwards" => forwards, "extra_vars" => ansible.config.extra_vars })
