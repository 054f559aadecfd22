// scene.pov - the bundled 3DGS scene: a few textured solids on a checkered disk, lit by two
// point lights, black background. make_scene.sh renders it once per camera through a small
// view file that declares the camera and then includes this one.
// Coordinates are POV-Ray's (left-handed, y up); make_scene.sh converts to the right-handed
// z-up world of transforms.json by swapping y and z.
global_settings { assumed_gamma 1.0 }
background { rgb 0 }
light_source { <3, 5, -2> color rgb 0.9 }
light_source { <-4, 3, 3> color rgb 0.45 shadowless }

#declare Matte = finish { ambient 0.25 diffuse 0.75 };

// Floor: a thin checkered disk, radius 2.
cylinder {
  <0, -0.05, 0>, <0, 0, 0>, 2.0
  pigment { checker color rgb <0.85, 0.82, 0.7> color rgb <0.25, 0.35, 0.55> scale 0.5 }
  finish { Matte }
}
// A large sphere with a wood-like banded pigment.
sphere {
  <0, 0.55, 0>, 0.55
  pigment { gradient y color_map { [0 color rgb <0.8, 0.35, 0.1>] [0.5 color rgb <0.95, 0.75, 0.3>]
                                   [1 color rgb <0.8, 0.35, 0.1>] } scale 0.25 }
  finish { Matte }
}
// A box turned 30 degrees, green with a brick pattern.
box {
  <-0.35, 0, -0.35>, <0.35, 0.7, 0.35>
  pigment { brick color rgb <0.9, 0.9, 0.85> color rgb <0.2, 0.55, 0.25> brick_size <0.2, 0.1, 0.2>
            mortar 0.02 }
  finish { Matte }
  rotate <0, 30, 0> translate <1.1, 0, 0.6>
}
// A striped cylinder.
cylinder {
  <0, 0, 0>, <0, 1.1, 0>, 0.22
  pigment { gradient y color_map { [0 color rgb <0.9, 0.9, 0.9>] [0.5 color rgb <0.9, 0.9, 0.9>]
                                   [0.5 color rgb <0.7, 0.1, 0.15>] [1 color rgb <0.7, 0.1, 0.15>] }
            scale 0.2 }
  finish { Matte }
  translate <-1.0, 0, 0.7>
}
// A cone and a torus.
cone { <0, 0, 0>, 0.35, <0, 0.8, 0>, 0.0 pigment { color rgb <0.95, 0.8, 0.1> } finish { Matte }
       translate <-0.6, 0, -1.1> }
torus { 0.3, 0.09 pigment { color rgb <0.3, 0.2, 0.7> } finish { Matte }
        rotate <70, 0, 0> translate <0.8, 0.4, -0.9> }

// Marker spheres: self-lit flat colours at known centres, resting on the disk, used by
// tests/gs to check that transforms.json reprojects them where the renderer drew them (on the
// floor rather than floating, so that they are scene content 3DGS can fit, not isolated
// specks in empty space). Keep in sync with tests/gs/test_scene_poses.c.
#declare Glow = finish { ambient 0 diffuse 0 emission 1 };
sphere { <1.5, 0.1, -0.2>, 0.1 pigment { color rgb <1, 0, 1> } finish { Glow } }
sphere { <-1.5, 0.1, -0.3>, 0.1 pigment { color rgb <0, 1, 1> } finish { Glow } }
sphere { <0.2, 0.1, 1.5>, 0.1 pigment { color rgb <1, 0, 1> } finish { Glow } }
sphere { <0.2, 0.1, -1.5>, 0.1 pigment { color rgb <0, 1, 1> } finish { Glow } }
