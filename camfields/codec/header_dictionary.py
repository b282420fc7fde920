"""The zlib preset dictionaries of bitstream headers: strings such headers repeat, so that zlib
refers back to them instead of spelling them out.

A header is JSON: the model config, then every tensor's name, shape and step count. The bytes
of the dictionary are part of the format: the writer and the reader must use the very same ones,
so changing them needs a new format version, and the strings below are literals, never
generated from the configs of the running version.

- ``VIDEO_HEADERS`` (formats 3 and 4): the keys and names the video codec's headers repeat (a
  14k-parameter model's header shrinks from about 460 to 225 bytes, 3 % of its file).
- ``FIELD_HEADERS`` (added in format 5): a scene header (NeRF trunk and head, sampler, rays), an
  image header of the ``cam`` model and one of ``pyramid_cam`` with its tensor list, most
  common last (zlib codes nearer matches in fewer bits). A 384x256 pyramid_cam file's header
  shrinks from 439 to 80 bytes: 0.03 bits per pixel, an eighth of a 0.23 bpp file.

Example::

    >>> import zlib
    >>> text = b'{"config":{"format":"camfields-image/1","height":256,"width":384}}'
    >>> packer = zlib.compressobj(9, zdict=header_dictionary(5))
    >>> len(packer.compress(text) + packer.flush()) < len(zlib.compress(text, 9))
    True
"""

from __future__ import annotations

VIDEO_HEADERS = (
    b'{"config":{"format":"camfields-video/1","width":1280,"height":720,"frames":132,"generator":'
    b'{"strides":[5,2,2,2,2],"channels":64,"stem_channels":32,"stem_hidden":128,"reduce":1.2,'
    b'"min_channels":12,"embedding_levels":80,"time_grid":30,"cam_norm":"instance","embedding":"grids",'
    b'"frame_grids":[[8,16],[32,4]]}},"bits":6,"low":-31,"counts":[1,2,3,10,100,1000],"tensors":['
    b'{"name":"stem.0.weight","shape":[128,160],"steps":1},{"name":"stem.0.bias","shape":[128],"steps":1},'
    b'{"name":"stem.2.weight","shape":[1,1],"steps":1},{"name":"stem.2.bias","shape":[1],"steps":1},'
    b'{"name":"stem.levels.0.table","shape":[8,288],"steps":1},'
    b'{"name":"stem.levels.1.table","shape":[32,144],"steps":1},'
    b'{"name":"convs.0.weight","shape":[200,3,3,3],"steps":1},{"name":"convs.0.bias","shape":[200],"steps":1},'
    b'{"name":"convs.1.weight","shape":[28,8,3,3],"steps":1},{"name":"convs.1.bias","shape":[28],"steps":1},'
    b'{"name":"convs.2.weight","shape":[24,7,3,3],"steps":1},{"name":"convs.2.bias","shape":[24],"steps":1},'
    b'{"name":"convs.3.weight","shape":[20,6,3,3],"steps":1},{"name":"convs.3.bias","shape":[20],"steps":1},'
    b'{"name":"convs.4.weight","shape":[16,5,3,3],"steps":1},{"name":"convs.4.bias","shape":[16],"steps":1},'
    b'{"name":"head.weight","shape":[3,6,1,1],"steps":1},{"name":"head.bias","shape":[3],"steps":1},'
    b'{"name":"time_grid.table","shape":[30,42],"steps":1}],"words":1}'
)
FIELD_HEADERS = (
    b'{"config":{"format":"camfields-scene/1","task":"nerf","weight_bits":8,"field":{"trunk":{"encodin'
    b'g":{"kind":"sinusoidal","num_features":256,"sigma":10.0,"num_freqs":10,"hash":{"levels":16,"feat'
    b'ures_per_level":2,"log2_table_size":19,"base_resolution":16,"growth":1.5}},"hidden":128,"depth":'
    b'4,"skips":[2],"activation":"relu","output_activation":"none","norm":"none","groups":1,"modulatio'
    b'n":{"grid":"planes","resolution":[128,128,128],"per_channel":false,"layers":null,"combine":"prod'
    b'uct","hash":{"levels":8,"features_per_level":2,"log2_table_size":14,"base_resolution":16,"growth'
    b'":1.5}}},"head":{"encoding":{"kind":"sinusoidal","num_features":256,"sigma":10.0,"num_freqs":4,"'
    b'hash":{"levels":16,"features_per_level":2,"log2_table_size":19,"base_resolution":16,"growth":1.5'
    b'}},"hidden":128,"depth":1,"skips":[],"activation":"relu","output_activation":"sigmoid","norm":"n'
    b'one","groups":1,"modulation":{"grid":"none","resolution":[32,32],"per_channel":false,"layers":nu'
    b'll,"combine":"product","hash":{"levels":8,"features_per_level":2,"log2_table_size":14,"base_reso'
    b'lution":16,"growth":1.5}}},"features":256,"density_bias":-2.0,"deformation":null,"time_input":fa'
    b'lse,"trunk_modulation":"position"},"sampler":{"kind":"hierarchical","steps_per_diagonal":128,"gr'
    b'id_resolution":64,"threshold":0.01,"update_every":16,"warmup":64,"update_fraction":0.5,"stop_tra'
    b'nsmittance":0.0001,"cone_angle":0.03125,"coarse":32,"fine":32},"aabb":[-2.0,-2.0,-2.0,2.0,2.0,2.'
    b'0],"background":[0.0,0.0,0.0],"camera":{"width":68,"height":120,"focal":113.32459531727181,"orbi'
    b't_radius":0.8089331372939407,"orbit_height":0.13355996340559506,"path":"orbit"},"rays":{"space":'
    b'"contract","near":0.05,"far":1000.0}},"bits":8,"tensors":[{"name":"field.trunk.hidden_layers.0.w'
    b'eight","shape":[128,63],"steps":1},{"name":"field.trunk.hidden_layers.0.bias","shape":[128],"ste'
    b'ps":1},{"name":"field.trunk.hidden_layers.1.weight","shape":[128,128],"steps":1},{"name":"field.'
    b'trunk.hidden_layers.1.bias","shape":[128],"steps":1},{"name":"field.trunk.hidden_layers.2.weight'
    b'","shape":[128,191],"steps":1},{"name":"field.trunk.hidden_layers.2.bias","shape":[128],"steps":'
    b'1},{"name":"field.trunk.hidden_layers.3.weight","shape":[128,128],"steps":1},{"name":"field.trun'
    b'k.hidden_layers.3.bias","shape":[128],"steps":1},{"name":"field.trunk.output_layer.weight","shap'
    b'e":[257,128],"steps":1},{"name":"field.trunk.output_layer.bias","shape":[257],"steps":1},{"name"'
    b':"field.trunk.modulation.grid.table","shape":[49152,8],"steps":1},{"name":"field.head.hidden_lay'
    b'ers.0.weight","shape":[128,283],"steps":1}],"words":1'
    b'{"config":{"format":"camfields-image/1","height":512,"width":768,"channels":3,"png_bits":8,"weig'
    b'ht_bits":6,"field":{"encoding":{"kind":"fourier","num_features":256,"sigma":10.0,"num_freqs":10,'
    b'"hash":{"levels":16,"features_per_level":2,"log2_table_size":19,"base_resolution":16,"growth":1.'
    b'5},"pyramid":{"levels":6,"features":1,"resolution":[]}},"hidden":256,"depth":3,"skips":[],"activ'
    b'ation":"relu","output_activation":"sigmoid","norm":"layer","groups":1,"modulation":{"grid":"dens'
    b'e","resolution":[32,32],"per_channel":false,"layers":null,"combine":"product","hash":{"levels":8'
    b',"features_per_level":2,"log2_table_size":14,"base_resolution":16,"growth":1.5}}}},"bits":6,"ten'
    b'sors":[{"name":"encoding.proj","shape":[2,256],"steps":1},{"name":"hidden_layers.0.weight","shap'
    b'e":[256,512],"steps":1},{"name":"hidden_layers.0.bias","shape":[256],"steps":1},{"name":"hidden_'
    b'layers.1.weight","shape":[256,256],"steps":1},{"name":"hidden_layers.1.bias","shape":[256],"step'
    b's":1},{"name":"hidden_layers.2.weight","shape":[256,256],"steps":1},{"name":"hidden_layers.2.bia'
    b's","shape":[256],"steps":1},{"name":"output_layer.weight","shape":[3,256],"steps":1},{"name":"ou'
    b'tput_layer.bias","shape":[3],"steps":1},{"name":"modulation.grid.table","shape":[1024,6],"steps"'
    b':1}],"words":1}'
    b'{"config":{"format":"camfields-image/1","height":512,"width":768,"channels":3,"png_bits":8,"weig'
    b'ht_bits":6,"field":{"encoding":{"kind":"pyramid","num_features":256,"sigma":10.0,"num_freqs":10,'
    b'"hash":{"levels":16,"features_per_level":2,"log2_table_size":19,"base_resolution":16,"growth":1.'
    b'5},"pyramid":{"levels":6,"features":1,"resolution":[768,512]}},"hidden":16,"depth":2,"skips":[],'
    b'"activation":"relu","output_activation":"sigmoid","norm":"layer","groups":1,"modulation":{"grid"'
    b':"dense","resolution":[16,16],"per_channel":false,"layers":null,"combine":"product","hash":{"lev'
    b'els":8,"features_per_level":2,"log2_table_size":14,"base_resolution":16,"growth":1.5}}}},"bits":'
    b'6,"tensors":[{"name":"encoding.grids.0.table","shape":[393216,1],"steps":1,"context":768},{"name'
    b'":"encoding.grids.1.table","shape":[98304,1],"steps":1,"context":384},{"name":"encoding.grids.2.'
    b'table","shape":[24576,1],"steps":1,"context":192},{"name":"encoding.grids.3.table","shape":[6144'
    b',1],"steps":1,"context":96},{"name":"encoding.grids.4.table","shape":[1536,1],"steps":1,"context'
    b'":48},{"name":"encoding.grids.5.table","shape":[384,1],"steps":1,"context":24},{"name":"hidden_l'
    b'ayers.0.weight","shape":[16,6],"steps":1},{"name":"hidden_layers.0.bias","shape":[16],"steps":1}'
    b',{"name":"hidden_layers.1.weight","shape":[16,16],"steps":1},{"name":"hidden_layers.1.bias","sha'
    b'pe":[16],"steps":1},{"name":"output_layer.weight","shape":[3,16],"steps":1},{"name":"output_laye'
    b'r.bias","shape":[3],"steps":1},{"name":"modulation.grid.table","shape":[256,4],"steps":1}],"word'
    b's":1}'
)


def header_dictionary(version: int) -> bytes | None:
    """The preset dictionary of a format ``version`` header (None: plain zlib, format 2)."""
    if version < 3:
        return None
    return VIDEO_HEADERS if version < 5 else VIDEO_HEADERS + FIELD_HEADERS
