"""Third-party components: the `pyrovae.plugins` entry-point group, and runs that use a
user's own component loading again (or saying what to import)."""

import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = '''
import pyro.distributions as dist

import pyrovae
from pyrovae.priors import StandardNormalPrior


@pyrovae.priors.register("demo_wide_normal")
class WideNormal(StandardNormalPrior):
    """N(0, s² I) with a fixed width s (a third-party plugin's prior)."""

    def __init__(self, latent_dim, *, width: float = 2.0):
        super().__init__(latent_dim)
        self.width = width

    def forward(self, batch_shape):
        shape = tuple(batch_shape) + (self.latent_dim,)
        return dist.Normal(self.zero, self.width).expand(shape).to_event(1)
'''


def run(args, cwd, path=()):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, path)), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def plugin_site(tmp_path):
    """A tiny installed package: its module plus a .dist-info with the entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "pyrovae_demo_plugin.py").write_text(PLUGIN)
    info = site / "pyrovae_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyrovae-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pyrovae.plugins]\ndemo = pyrovae_demo_plugin\n")
    return site


def test_entry_point_plugin_is_listed_and_trainable(plugin_site, tmp_path):
    r = run(["-m", "pyrovae", "list"], tmp_path, [plugin_site])
    assert r.returncode == 0, r.stderr
    assert "demo_wide_normal" in r.stdout and "width = 2.0" in r.stdout
    r = run(["-m", "pyrovae", "train", "--set", "model.prior.name=demo_wide_normal",
             "--set", "model.prior.width=3", "--set", "train.epochs=1", "--out", "run", "--quiet"],
            tmp_path, [plugin_site])
    assert r.returncode == 0, r.stderr
    assert "width: 3" in (tmp_path / "run" / "config.yaml").read_text()
    r = run(["-m", "pyrovae", "evaluate", "run"], tmp_path, [plugin_site])
    assert r.returncode == 0 and "nats per example" in r.stdout


def test_broken_plugin_warns_and_the_rest_works(tmp_path):
    site = tmp_path / "site"
    info = site / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pyrovae.plugins]\nbroken = no_such_module_xyz\n")
    r = run(["-m", "pyrovae", "list"], tmp_path, [site])
    assert r.returncode == 0 and "standard_normal" in r.stdout
    assert "broken" in r.stderr and "no_such_module_xyz" in r.stderr


def test_run_with_a_user_module_component_loads_again(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "my_priors.py").write_text(PLUGIN.replace("demo_wide_normal", "my_wide_normal"))
    train = textwrap.dedent('''
        import my_priors, pyrovae
        vae = pyrovae.build({"model": {"prior": "my_wide_normal", "latent_dim": 2},
                             "train": {"epochs": 1}})
        pyrovae.fit(vae, run_dir="run", progress=False)
    ''')
    assert run(["-c", train], tmp_path, [mods]).returncode == 0
    load = "import pyrovae; v = pyrovae.load('run'); print(type(v.prior).__name__)"
    r = run(["-c", load], tmp_path, [mods])  # the saved module name is imported for the user
    assert r.returncode == 0 and "WideNormal" in r.stdout, r.stderr
    r = run(["-c", load], tmp_path, [])  # the module cannot be found: say which one
    assert r.returncode != 0 and "my_priors" in r.stderr and "my_wide_normal" in r.stderr
    r = run(["-m", "pyrovae", "evaluate", "run"], tmp_path, [])
    assert r.returncode == 2 and "my_priors" in r.stderr and "Traceback" not in r.stderr


def test_component_defined_in_a_script_names_the_script(tmp_path):
    script = tmp_path / "train_it.py"
    script.write_text(PLUGIN.replace("demo_wide_normal", "script_normal") + textwrap.dedent('''
        vae = pyrovae.build({"model": {"prior": "script_normal", "latent_dim": 2},
                             "train": {"epochs": 1}})
        pyrovae.fit(vae, run_dir="run", progress=False)
    '''))
    assert run([str(script)], tmp_path).returncode == 0
    r = run(["-m", "pyrovae", "sample", "run", "-n", "4", "--out", "s.png"], tmp_path)
    assert r.returncode == 2 and "__main__" in r.stderr and "script_normal" in r.stderr
